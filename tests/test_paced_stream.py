"""benchmarks/paced_stream.py with several sessions on one GPU worker, on tiny random configs (CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "paced_stream.py"


def load_script():
    spec = importlib.util.spec_from_file_location("paced_stream", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_paced_stream_reports_each_session_of_a_shared_worker(capsys) -> None:
    paced = load_script()
    args = paced.parse_args(
        ["--generator", "tiny", "--sessions", "2", "--seconds", "3", "--switch-every", "1", "--report-every", "1"]
    )
    result = await paced.run(args)
    progress = capsys.readouterr().err.splitlines()
    assert any(line.startswith("s0 ") and "stalls" in line for line in progress), "progress lines as it runs"
    assert any(line.startswith("s1 ") for line in progress)
    assert result["sessions"] == 2 and [r["session"] for r in result["per_session"]] == ["s0", "s1"]
    assert result["stalls"] == [r["stalls"] for r in result["per_session"]]
    for report in result["per_session"]:  # progress over the window, not a rate
        assert report["frames_sent"] > 0 and report["blocks_generated"] >= 2
        assert report["switches_requested"] >= 1 and isinstance(report["stalls"], int)


async def test_paced_stream_staggers_joins_and_pauses_the_last_session() -> None:
    paced = load_script()
    args = paced.parse_args(
        ["--generator", "synthetic", "--size", "256x144", "--sessions", "2", "--seconds", "4", "--stagger", "1",
         "--pause-every", "1", "--pause-for", "0.3", "--switch-every", "10"]
    )  # fmt: skip
    first, last = (await paced.run(args))["per_session"]
    assert first["joined_at_s"] < last["joined_at_s"] and last["joined_at_s"] >= 1.0
    assert first["pauses"] == 0 and last["pauses"] >= 1
    assert last["frames_sent"] > 0 and last["seconds"] < first["seconds"]
