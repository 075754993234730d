"""Schedule files: what the director page exports `generate` renders, and the director's parser
(signaling/static/js/protocol.js, run in Node as it is) and the Python one read the same documents alike."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from longlive_rtc import protocol
from longlive_rtc.cli import main
from longlive_rtc.generators.base import Geometry
from longlive_rtc.generators.stamp import read_stamp
from longlive_rtc.schedule import BLEND, CUT, ScheduledPrompt, Transition
from longlive_rtc.schedule_file import ScheduleFileError, load_schedule_file, parse_schedule_text

from .page_modules import run_module_script

# the schedule as `state` lists it (and the director's model holds it): out of order, with frames and transitions
STATE_SCHEDULE = [
    ScheduledPrompt(9, "the blue ocean at night", 9, Transition(CUT)).to_dict(),
    ScheduledPrompt(0, "a red fox running through snow", 0).to_dict(),
    ScheduledPrompt(13, "a green forest", 15, Transition(BLEND, 2, "slerp")).to_dict(),
]

SCRIPT = """
import { readFileSync } from "node:fs";
import { parseSchedule, scheduleToJson } from "./js/protocol.js";

const { scheduled, documents } = JSON.parse(readFileSync(0, "utf8"));
const parse = (text) => {
  try {
    return { entries: parseSchedule(text) };
  } catch (error) {
    return { error: error.message };
  }
};
console.log(JSON.stringify({ exported: scheduleToJson(scheduled), parsed: documents.map(parse) }));
"""

RECORDING = {  # a recording's JSON (longlive_rtc/outputs/replay.py): the schedule beside the seed and settings
    "schedule": [{"timestamp": 0, "prompt": "a"}, {"timestamp": 12, "prompt": "b", "transition": {"mode": "cut"}}],
    "seed": 3,
    "frames": 24,
    "settings": {"width": 832},
}
GOOD = [
    json.dumps([{"timestamp": 0, "prompt": "a"}, {"timestamp": 9, "prompt": "b"}]),
    json.dumps(RECORDING),
    json.dumps({"status": "idle", "scheduled": [{"timestamp": 0, "prompt": "a", "frame": 0}]}),  # a saved state
    json.dumps({"schedule": None, "scheduled": [{"timestamp": 0, "prompt": "a"}]}),
    '[{"timestamp": 0, "new_prompt": "a"}]',
    '[{"timestamp": 0, "prompt": null, "new_prompt": "b"}]',
    '[{"timestamp": 30.0, "prompt": "a"}, {"timestamp": 3e1, "prompt": "b"}, {"timestamp": -0.0, "prompt": "c"}]',
    '[{"timestamp": 0, "prompt": "a", "transition": null}]',
    '[{"timestamp": 0, "prompt": "a", "transition": {"mode": "recache"}}]',
    '[{"timestamp": 0, "prompt": "a", "transition": {"mode": "blend", "blocks": 4}}]',
    f'[{{"timestamp": {protocol.MAX_TIMESTAMP}, "prompt": "{"p" * protocol.MAX_PROMPT_CHARS}"}}]',
    "[]",
]
BAD = [  # (document, a phrase both parsers' messages hold, or None)
    ("{oops", "JSON"),
    ('{"timestamp": 0, "prompt": "a"}', "JSON array"),
    ('{"scheduled": {}}', "JSON array"),
    ('{"schedule": "a"}', "JSON array"),
    ('"a"', "JSON array"),
    ("null", "JSON array"),
    ('[{"timestamp": 0, "prompt": "x", "colour": 1}]', "unknown key 'colour'"),
    ('[{"timestamp": 0, "prompt": "a"}, {"timestamp": 1.5, "prompt": "x"}]', "'timestamp' must be"),
    ('[{"timestamp": -1, "prompt": "x"}]', "'timestamp' must be"),
    (f'[{{"timestamp": {protocol.MAX_TIMESTAMP + 1}, "prompt": "x"}}]', "'timestamp' must be"),
    ('[{"timestamp": true, "prompt": "x"}]', "'timestamp' must be"),
    ('[{"timestamp": "3", "prompt": "x"}]', "'timestamp' must be"),
    ('[{"prompt": "x"}]', "'timestamp' must be"),
    ('[{"timestamp": 0}]', "'prompt' must"),
    ('[{"timestamp": 0, "prompt": ""}]', "'prompt' must"),
    ('[{"timestamp": 0, "prompt": "   "}]', "'prompt' must"),
    ('[{"timestamp": 0, "prompt": 5}]', "'prompt' must"),
    (f'[{{"timestamp": 0, "prompt": "{"p" * (protocol.MAX_PROMPT_CHARS + 1)}"}}]', "'prompt' must"),
    ('[{"timestamp": 0, "prompt": "x", "transition": "cut"}]', "'transition' must be an object with a 'mode'"),
    ('[{"timestamp": 0, "prompt": "x", "transition": []}]', "'transition' must be an object with a 'mode'"),
    ("[null]", None),
    ('["a"]', None),
    ('[[0, "a"]]', None),
]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The director's export of STATE_SCHEDULE and its parser's verdict on GOOD + BAD, from one Node run."""
    stdin = json.dumps({"scheduled": STATE_SCHEDULE, "documents": GOOD + [text for text, _ in BAD]})
    return run_module_script(tmp_path_factory.mktemp("pages"), SCRIPT, stdin)


def as_python(entries: list[dict]) -> list[tuple[int, str, Transition]]:
    """The director's parsed entries as the server takes them (its prompts stripped, as schedule_prompt does)."""
    return [(e["timestamp"], e["prompt"].strip(), Transition.from_dict(e.get("transition"))) for e in entries]


def test_generate_renders_the_schedule_the_director_exports(pages: dict, tmp_path: Path) -> None:
    exported = pages["exported"]
    assert json.loads(exported) == [
        {"timestamp": 0, "prompt": "a red fox running through snow"},
        {"timestamp": 9, "prompt": "the blue ocean at night", "transition": {"mode": "cut"}},
        {"timestamp": 13, "prompt": "a green forest", "transition": {"mode": "blend", "blocks": 2, "curve": "slerp"}},
    ]
    schedule = tmp_path / "longlive-schedule-new.json"
    schedule.write_text(exported)
    entries = load_schedule_file(schedule)
    assert [(e.timestamp, e.prompt, e.transition) for e in entries] == [
        (0, "a red fox running through snow", Transition()),
        (9, "the blue ocean at night", Transition(CUT)),
        (13, "a green forest", Transition(BLEND, 2, "slerp")),
    ]
    out = tmp_path / "video.mp4"
    assert main(["generate", "--schedule", str(schedule), "--frames", "18", "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        stamps = [read_stamp(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    geometry = Geometry()
    assert len(stamps) == geometry.video_frames_before(18) and all(stamps)
    cut, blend = geometry.video_frames_before(9), geometry.video_frames_before(15)  # 13 applies at block 15
    assert {s.prompt for s in stamps[:cut]} == {0} and stamps[cut].prompt == 1 and stamps[blend].prompt == 2


def test_both_parsers_accept_the_same_documents_with_the_same_entries(pages: dict) -> None:
    for text, verdict in zip(GOOD, pages["parsed"][: len(GOOD)], strict=True):
        assert "entries" in verdict, (text[:80], verdict)
        python = parse_schedule_text(text, "f.json", require_initial=False)
        assert [(e.timestamp, e.prompt, e.transition) for e in python] == as_python(verdict["entries"]), text[:80]


def test_both_parsers_refuse_the_same_documents_for_the_same_reason(pages: dict) -> None:
    for (text, phrase), verdict in zip(BAD, pages["parsed"][len(GOOD) :], strict=True):
        assert "error" in verdict, (text[:80], verdict)
        with pytest.raises(ScheduleFileError) as refused:
            parse_schedule_text(text, "f.json", require_initial=False)
        if phrase is not None:
            assert phrase in verdict["error"] and phrase in str(refused.value), (text[:80], verdict, refused.value)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('{"scheduled": {}}', 'bad.json: expected a JSON array of {"timestamp": int, "prompt": str, "transition"?: '
         'object}, or an object with one under "schedule" or "scheduled"'),
        ('[{"timestamp": 0, "prompt": "a"}, {"timestamp": 9, "promt": "b"}]', "bad.json[1]: unknown key 'promt'"),
        ('[{"timestamp": 0, "prompt": "a"}, {"timestamp": 1.5, "prompt": "b"}]', "bad.json[1]: 'timestamp' must be"),
        ('[{"timestamp": 0, "prompt": "a", "transition": {"mode": "fade"}}]', "bad.json[0]: 'transition.mode'"),
        ('[{"timestamp": 3, "prompt": "a"}]', "bad.json: needs a prompt at timestamp 0"),
        ("[{", "bad.json: cannot read a JSON schedule"),
    ],
)  # fmt: skip
def test_generate_says_in_one_line_what_is_wrong_with_a_file_and_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, line: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["generate", "--schedule", str(bad), "--frames", "3", "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path}/") and line in err[0], err
    assert not (tmp_path / "x.mp4").exists()
