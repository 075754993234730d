"""docker-compose.yml and the Dockerfile: parsed and checked against the CLI (no Docker engine in CI)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from longlive_rtc.cli import ENV_PREFIX, build_parser

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def serve_flags() -> set[str]:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    return {option for action in serve._actions for option in action.option_strings}


def test_server_reserves_a_gpu_with_host_networking() -> None:
    server = compose()["services"]["longlive"]
    assert server["network_mode"] == "host"
    devices = server["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "coturn" in server["depends_on"]


def test_every_environment_variable_is_a_serve_flag() -> None:
    env = compose()["services"]["longlive"]["environment"]
    flags = serve_flags()
    for name in env:
        assert name.startswith(ENV_PREFIX), name
        flag = "--" + name.removeprefix(ENV_PREFIX).lower().replace("_", "-")
        if flag == "--ice-servers":
            flag = "--ice-server"  # the repeatable flag's comma-separated environment form
        assert flag in flags, f"{name} names no `serve` flag"
    ice = env["LONGLIVE_RTC_ICE_SERVERS"].split(",")
    assert all(re.match(r"(stun|turn|turns):", url) for url in ice)


def test_coturn_uses_host_networking_and_the_server_credentials() -> None:
    services = compose()["services"]
    turn = services["coturn"]
    assert turn["network_mode"] == "host" and turn["image"].startswith("coturn/coturn")
    command = " ".join(turn["command"])
    assert "--lt-cred-mech" in command and "--listening-port=3478" in command
    env = services["longlive"]["environment"]
    user = re.search(r"--user=(\$\{[^}]+\}|[^:]+):", command).group(1)
    assert user == env["LONGLIVE_RTC_ICE_USERNAME"]


def test_dockerfile_runs_the_cli_on_a_cuda_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", dockerfile, re.M)
    assert 'ENTRYPOINT ["longlive-rtc"]' in dockerfile
    assert '"serve"' in dockerfile
    for path in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"
