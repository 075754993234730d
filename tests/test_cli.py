"""The command line: flags with environment equivalents, validation, one-line errors, help, logging, schema."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from longlive_rtc.cli import CHATTY_LOGGERS, build_parser, main, parse_ice_servers
from longlive_rtc.protocol import json_schema


def test_environment_variables_set_flag_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGLIVE_RTC_PORT", "9123")
    monkeypatch.setenv("LONGLIVE_RTC_CODEC", "h264")
    args = build_parser().parse_args(["serve"])
    assert (int(args.port), args.codec) == (9123, "h264")
    assert int(build_parser().parse_args(["serve", "--port", "7000"]).port) == 7000  # the flag wins


def test_ice_servers_with_turn_credentials() -> None:
    servers = parse_ice_servers(["stun:stun.example.org:3478", "turn:turn.example.org:3478"], "user", "secret")
    assert [s.urls for s in servers] == ["stun:stun.example.org:3478", "turn:turn.example.org:3478"]
    assert (servers[0].username, servers[1].username, servers[1].credential) == (None, "user", "secret")
    with pytest.raises(SystemExit, match="needs --ice-username"):
        parse_ice_servers(["turn:turn.example.org:3478"], None, None)
    with pytest.raises(SystemExit, match="must start with"):
        parse_ice_servers(["http://not-ice"], None, None)


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_docs_protocol_md_is_what_schema_markdown_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--markdown"]) == 0
    docs = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
    assert capsys.readouterr().out == docs.read_text(), "regenerate: longlive-rtc schema --markdown > docs/protocol.md"


def test_longlive_without_weights_names_the_missing_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "s.json"
    schedule.write_text('[{"timestamp": 0, "prompt": "x"}]')
    argv = ["generate", "--generator", "longlive", "--device", "cpu", "--weights", str(tmp_path / "none"),
            "--schedule", str(schedule), "--frames", "3", "--out", str(tmp_path / "x.mp4")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value)
    assert "longlive_base.pt" in message and "longlive-rtc download --dir" in message


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``longlive-rtc ARGV`` in a child process, as a user types it."""
    command = [sys.executable, "-m", "longlive_rtc.cli", *argv]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        line = one_error_line(run_cli("serve", "--host", "127.0.0.1", "--port", port, "--auth", "none", cwd=tmp_path))
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line


@pytest.mark.parametrize(
    ("out", "expected"),
    [("missing/dir/x.mp4", "does not exist"), ("x.webm", "ending in .mp4"), ("x", "ending in .mp4")],
)
def test_generate_refuses_an_output_it_cannot_write_in_one_line(tmp_path: Path, out: str, expected: str) -> None:
    (tmp_path / "s.json").write_text('[{"timestamp": 0, "prompt": "x"}]')
    line = one_error_line(run_cli("generate", "--schedule", "s.json", "--frames", "3", "--out", out, cwd=tmp_path))
    assert out in line and expected in line
    assert list(tmp_path.iterdir()) == [tmp_path / "s.json"]  # nothing written, no directory made


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--max-sessions", "0"],
        ["serve", "--session-idle", "-1"],
        ["serve", "--max-peers", "0"],
        ["serve", "--max-peers-per-session", "0"],
        ["serve", "--rate-limit", "0"],
        ["serve", "--rate-limit", "nan"],
        ["serve", "--rate-burst", "0"],
        ["serve", "--token-ttl", "-5"],
        ["serve", "--buffer-blocks", "0"],
        ["serve", "--port", "0"],
        ["serve", "--port", "70000"],
        ["serve", "--width", "17"],
        ["generate", "--schedule", "s.json", "--out", "x.mp4", "--frames", "3", "--height", "33"],
        ["generate", "--schedule", "s.json", "--out", "x.mp4", "--frames", "3", "--height", "48"],
        ["serve", "--max-peers", "many"],
        ["generate", "--schedule", "s.json", "--out", "x.mp4", "--frames", "0"],
        ["generate", "--schedule", "s.json", "--out", "x.mp4", "--frames", "3", "--seed", "-1"],
        ["bench", "--runs", "0"],
    ],
)
def test_out_of_range_flags_are_argparse_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    flag = next(a for a in reversed(argv) if a.startswith("--"))
    assert exit_info.value.code == 2 and f"argument {flag}:" in capsys.readouterr().err


def test_an_out_of_range_environment_value_is_refused_like_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LONGLIVE_RTC_MAX_SESSIONS", "0")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve"])
    assert "--max-sessions: '0' must be >= 1" in capsys.readouterr().err
    monkeypatch.setenv("LONGLIVE_RTC_MAX_SESSIONS", "3")
    assert build_parser().parse_args(["serve"]).max_sessions == 3


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"longlive-rtc {version('longlive-rtc')}"


def test_log_level_is_accepted_before_and_after_the_command() -> None:
    parse = build_parser().parse_args
    assert parse(["schema", "--log-level", "debug"]).log_level == "DEBUG"
    assert parse(["--log-level", "warning", "schema"]).log_level == "WARNING"
    assert parse(["--log-level", "warning", "schema", "--log-level", "error"]).log_level == "ERROR"
    assert parse(["schema"]).log_level == "INFO"
    with pytest.raises(SystemExit):
        parse(["schema", "--log-level", "loud"])


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_has_a_description_examples_and_help_for_every_flag() -> None:
    commands = subcommands()
    assert set(commands) == {"serve", "generate", "bench", "download", "schema"}
    for name, sub in commands.items():
        assert sub.description and "composition root" not in sub.description, name
        assert f"longlive-rtc {name}" in sub.epilog.split("examples:", 1)[1], name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings} has no help"
    assert "composition root" not in build_parser().format_help()


@pytest.fixture
def restore_logger_levels() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_logger_levels")
def test_ice_and_access_loggers_stay_at_warning_unless_debug_is_asked(capsys: pytest.CaptureFixture[str]) -> None:
    main(["schema"])
    assert {logging.getLogger(name).level for name in ("aioice", "aiortc")} == {logging.WARNING}
    main(["schema", "--log-level", "error"])
    assert logging.getLogger("aioice").level == logging.ERROR
    main(["schema", "--log-level", "debug"])
    assert {logging.getLogger(name).level for name in CHATTY_LOGGERS} == {logging.DEBUG}


def test_every_serve_flag_but_random_weights_names_its_environment_variable() -> None:
    serve = subcommands()["serve"]
    unnamed = set()
    for action in serve._actions:
        flag = action.option_strings[-1]
        expected = "LONGLIVE_RTC_" + flag.removeprefix("--").upper().replace("-", "_")
        if not any(name in action.help for name in (expected, expected + "S")):
            unnamed.add(flag)
    assert unnamed == {"--help", "--log-level", "--random-weights"}  # --log-level's is on the top-level flag
    assert "[env LONGLIVE_RTC_LOG_LEVEL;" in build_parser().format_help()


def test_download_without_network_is_one_line_naming_the_files_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: the Hub's requests are refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    result = run_cli("download", "--dir", "w", "--no-tae", cwd=tmp_path)
    line = one_error_line(result)
    assert "cannot reach" in line and "by hand" in line and "longlive-rtc download --dir w" in line
    for path in ("w/wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth", "w/longlive_models/models/lora.pt"):
        assert path in line
    assert "taew2_1.pth" not in line and "Retry" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # no folders, no .cache


def test_serve_without_devices_builds_one_generator_now_and_reuses_freed_ones() -> None:
    from longlive_rtc.cli import one_device_generators

    args = build_parser().parse_args(["serve", "--width", "160", "--height", "96"])
    factory, release = one_device_generators(args)
    first, second = factory(), factory()  # the one built up front, then a new one
    assert first is not second and first.geometry.width == 160
    release(first)
    assert factory() is first  # a freed session's generator serves the next session


def test_cuda_graphs_off_cuda_are_refused_before_any_weights_load() -> None:
    from longlive_rtc.cli import build_generator

    args = build_parser().parse_args(["serve", "--generator", "longlive", "--device", "cpu", "--cuda-graphs", "on"])
    with pytest.raises(SystemExit, match="--cuda-graphs on needs a CUDA --device, not cpu"):
        build_generator(args, warm=False)
