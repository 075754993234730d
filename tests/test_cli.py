"""The command line: flags with environment equivalents, ICE server parsing, schema, weights errors."""

from __future__ import annotations

import json

import pytest

from longlive_rtc.cli import build_parser, main, parse_ice_servers
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


def test_longlive_without_weights_names_the_missing_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "s.json"
    schedule.write_text('[{"timestamp": 0, "prompt": "x"}]')
    argv = ["generate", "--generator", "longlive", "--device", "cpu", "--weights", str(tmp_path / "none"),
            "--schedule", str(schedule), "--frames", "3", "--out", str(tmp_path / "x.mp4")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value)
    assert "longlive_base.pt" in message and "longlive-rtc download --dir" in message
