"""Parsing and validation of client messages; the JSON Schema; a fuzz of the parser."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longlive_rtc import protocol
from longlive_rtc.protocol import MAX_MESSAGE_BYTES, Command, ErrorCode, Event, parse_command

VALID = [
    {"type": "schedule_prompt", "data": {"new_prompt": "a fox", "timestamp": 0}},
    {"type": "schedule_prompt", "data": {"new_prompt": "x" * 2000, "timestamp": 10**7}},
    {"type": "remove_prompt", "data": {"timestamp": 12}},
    {"type": "start"},
    {"type": "start", "data": {}},
    {"type": "pause", "data": {}},
    {"type": "resume", "data": {}},
    {"type": "stop", "data": {}},
    {"type": "reset", "data": {}},
    {"type": "set_seed", "data": {"seed": 0}},
    {"type": "set_seed", "data": {"seed": 2**32 - 1}},
    {"type": "get_state", "data": {}, "id": "q1"},
]


def code_of(raw: str | bytes) -> str:
    result = parse_command(raw)
    assert isinstance(result, Event) and result.type == "error", result
    return result.data["code"]


@pytest.mark.parametrize("message", VALID)
def test_valid_commands_parse_and_match_the_schema(message: dict) -> None:
    result = parse_command(json.dumps(message))
    assert isinstance(result, Command)
    assert result.type == message["type"]
    assert result.data == message.get("data", {})
    jsonschema.validate(message, protocol.json_schema())


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        (b"\xff\xfe\x00", "bad_json"),
        ("", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"start"', "bad_message"),
        ("{}", "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "start", "data": []}', "bad_message"),
        ('{"type": "start", "extra": 1}', "bad_message"),
        ('{"type": "start", "id": {"a": 1}}', "bad_message"),
        ('{"type": "start", "id": true}', "bad_message"),
        ('{"type": "launch_rockets"}', "unknown_command"),
        ('{"type": "schedule_prompt", "data": {"timestamp": 0}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "", "timestamp": 0}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": 7, "timestamp": 0}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "a", "timestamp": -1}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "a", "timestamp": 10000001}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "a", "timestamp": 1.5}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "a", "timestamp": true}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "a", "timestamp": "3"}}', "invalid_field"),
        ('{"type": "schedule_prompt", "data": {"new_prompt": "a", "timestamp": 0, "x": 1}}', "invalid_field"),
        ('{"type": "set_seed", "data": {"seed": 4294967296}}', "invalid_field"),
        ('{"type": "set_seed", "data": {"seed": -1}}', "invalid_field"),
        ('{"type": "set_seed", "data": {}}', "invalid_field"),
        ('{"type": "start", "data": {"now": true}}', "invalid_field"),
        ('{"type": "remove_prompt", "data": {"timestamp": null}}', "invalid_field"),
    ],
)
def test_bad_input_becomes_an_error_event(raw: str | bytes, code: str) -> None:
    assert code_of(raw) == code


def test_prompt_length_limit() -> None:
    msg = {"type": "schedule_prompt", "data": {"new_prompt": "x" * 2001, "timestamp": 0}}
    assert code_of(json.dumps(msg)) == "invalid_field"


def test_oversized_message_is_limit_exceeded() -> None:
    padding = "y" * MAX_MESSAGE_BYTES
    assert code_of(json.dumps({"type": "get_state", "id": padding})) == "limit_exceeded"
    multibyte = json.dumps({"type": "get_state", "id": "é" * 9000}, ensure_ascii=False)
    assert len(multibyte) < MAX_MESSAGE_BYTES < len(multibyte.encode())
    assert code_of(multibyte) == "limit_exceeded"


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert code_of("[" * 5000 + "]" * 5000) in {"bad_json", "bad_message"}


@pytest.mark.parametrize("message_id", ["abc", 42, 0, -7])
def test_ids_are_echoed_on_ack_and_error(message_id: str | int) -> None:
    ok = parse_command(json.dumps({"type": "start", "id": message_id}))
    assert isinstance(ok, Command) and ok.id == message_id
    bad = parse_command(json.dumps({"type": "nope", "id": message_id}))
    assert isinstance(bad, Event) and bad.id == message_id and bad.to_dict()["id"] == message_id
    assert protocol.ack("start", message_id).to_dict() == {
        "type": "ack",
        "data": {"command": "start"},
        "id": message_id,
    }


def test_error_names_the_command() -> None:
    bad = parse_command('{"type": "set_seed", "data": {"seed": "x"}, "id": 3}')
    assert isinstance(bad, Event)
    assert bad.data == {"code": "invalid_field", "message": "'seed' must be an integer", "command": "set_seed"}


def test_error_codes_are_the_stable_strings() -> None:
    assert {str(c) for c in ErrorCode} == {
        "bad_json", "bad_message", "unknown_command", "invalid_field", "no_initial_prompt",
        "already_running", "not_running", "not_found", "limit_exceeded", "forbidden", "busy",
        "generator_failed",
    }  # fmt: skip


def test_events_match_the_schema() -> None:
    schema = protocol.json_schema()
    events = [
        protocol.ack("start", "a"),
        protocol.error(ErrorCode.BUSY, "full"),
        protocol.progress(3, 9, 0.5625),
        protocol.prompt_applied(4, 6, "p"),
        Event(
            "state",
            {
                "status": "idle",
                "current_start_frame": 0,
                "scheduled": [{"timestamp": 0, "prompt": "p", "frame": 0}],
                "schedule_version": 0,
                "active_prompt": None,
                "seed": 0,
                "geometry": {"width": 832},
            },
        ),
        Event(
            "state",
            {
                "status": "running",
                "current_start_frame": 3,
                "schedule_version": 2,
                "active_prompt": "p",
                "seed": 0,
                "geometry": {"width": 832},
            },
        ),
        protocol.schedule_changed(
            2,
            [
                {"op": "put", "timestamp": 4, "prompt": "q", "frame": 6},
                {"op": "remove", "timestamp": 4},
                {"op": "clear"},
                {"op": "rewind"},
            ],
        ),
    ]
    for event in events:
        jsonschema.validate(json.loads(event.to_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "progress", "data": {"current_start_frame": 3}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "set_seed", "data": {"seed": -1}}, schema)
    for change in ({"op": "put", "timestamp": 4}, {"op": "clear", "timestamp": 4}, {"op": "move"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"type": "schedule_changed", "data": {"version": 1, "changes": [change]}}, schema)


def test_docs_embed_the_current_schema() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    block = doc.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == protocol.json_schema(), "regenerate with: longlive-rtc schema --markdown"


#: Text with lone surrogates and control characters mixed in (json.dumps escapes them as \\udXXX, \\u0000).
hostile_text = st.text(
    st.characters(categories=["Cs", "Cc"]) | st.sampled_from(" \t\n\u00e9\u2028\ufeff") | st.characters(),
    max_size=30,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from([*protocol.COMMANDS, "x", ""]) | st.text(max_size=10) | hostile_text},
    optional={
        "data": st.dictionaries(
            st.sampled_from(["new_prompt", "timestamp", "seed", "other"]) | st.text(max_size=8) | hostile_text,
            json_values,
            max_size=3,
        )
        | json_values,
        "id": json_values,
    },
)


def _checked(result: Command | Event) -> None:
    assert isinstance(result, Command | Event)
    if isinstance(result, Event):
        assert result.type == "error"
        assert result.data["code"] in {str(c) for c in ErrorCode}
        json.dumps(result.to_dict())
        result.to_json().encode("utf-8")  # what a data channel does with it
    else:  # anything accepted can be sent back (echoed id, prompts in state events)
        protocol.ack(result.type, result.id).to_json().encode("utf-8")
        Event("state", dict(result.data)).to_json().encode("utf-8")


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_like)
def test_fuzz_structured_messages(message: dict) -> None:
    _checked(parse_command(json.dumps(message)))


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200) | hostile_text)
def test_fuzz_arbitrary_text(raw: str | bytes) -> None:
    _checked(parse_command(raw))


@settings(max_examples=500, deadline=None)
@given(hostile_text, st.integers(0, 10**7))
def test_fuzz_hostile_prompts_are_cleaned_or_refused(prompt: str, timestamp: int) -> None:
    message = {"type": "schedule_prompt", "data": {"new_prompt": prompt, "timestamp": timestamp}}
    result = parse_command(json.dumps(message))
    _checked(result)
    if isinstance(result, Command):
        stored = result.data["new_prompt"]
        assert stored == json.loads(json.dumps(prompt)).strip() and stored  # (escaped pairs join up)
        assert not any(ord(c) < 32 and c not in "\t\n\r" for c in stored)
    else:
        assert result.data["code"] == "invalid_field"


# --- hostile text at the boundary ------------------------------------------------------------------------


def schedule_text(prompt_json: str) -> str:
    """A schedule_prompt message as JSON text with the prompt given as raw JSON (so escapes stay escapes)."""
    return '{"type":"schedule_prompt","data":{"new_prompt":' + prompt_json + ',"timestamp":0}}'


def test_invalid_utf8_bytes_are_bad_json() -> None:
    result = parse_command(b"\xff\xfe{")
    assert isinstance(result, Event) and result.data["code"] == "bad_json" and result.id is None
    result.to_json().encode("utf-8")
    assert code_of('{"type": "start"}'.encode("utf-16")) == "bad_json"  # JSON text is UTF-8
    ok = parse_command('{"type":"schedule_prompt","data":{"new_prompt":"café ☕","timestamp":0}}'.encode())
    assert isinstance(ok, Command) and ok.data["new_prompt"] == "café ☕"


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d", "\\ude00\\ud83d"])
def test_lone_surrogates_in_a_prompt_are_invalid_field(escape: str) -> None:
    result = parse_command(schedule_text(f'"{escape}"'))
    assert isinstance(result, Event) and result.data["code"] == "invalid_field"
    assert result.data["command"] == "schedule_prompt" and "surrogate" in result.data["message"]
    result.to_json().encode("utf-8")


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    result = parse_command(schedule_text('"\\ud83d\\ude00"'))
    assert isinstance(result, Command) and result.data["new_prompt"] == "\U0001f600"


def test_a_lone_surrogate_id_is_refused_without_echo() -> None:
    result = parse_command('{"type":"start","id":"\\ud800"}')
    assert isinstance(result, Event) and result.data["code"] == "bad_message" and result.id is None
    assert "id" not in json.loads(result.to_json())
    result.to_json().encode("utf-8")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"type":"\\ud800"}', "unknown_command"),
        ('{"type":"start","\\ud800":1}', "bad_message"),
        ('{"type":"start","data":{"\\udbff":1}}', "invalid_field"),
        ('{"type":"set_seed","data":{"seed":1,"\\udbff":"\\udbff"}}', "invalid_field"),
    ],
)
def test_lone_surrogates_elsewhere_are_refused_and_the_error_encodes(raw: str, code: str) -> None:
    result = parse_command(raw)
    assert isinstance(result, Event) and result.data["code"] == code
    text = result.to_json()
    text.encode("utf-8")
    assert "\\ud" in text  # named, escaped


@pytest.mark.parametrize("char", ["\\u0000", "\\u0001", "\\u0008", "\\u000b", "\\u000c", "\\u001b", "\\u001f"])
def test_control_characters_in_a_prompt_are_invalid_field(char: str) -> None:
    result = parse_command(schedule_text(f'"a fox{char} at dawn"'))
    assert isinstance(result, Event) and result.data["code"] == "invalid_field"
    assert "control character" in result.data["message"]


def test_prompts_are_stripped_and_keep_tabs_and_newlines() -> None:
    result = parse_command(schedule_text('"  \\t a fox\\n\\tat dawn\\r\\n  "'))
    assert isinstance(result, Command) and result.data["new_prompt"] == "a fox\n\tat dawn"
    for blank in ['" "', '"\\n\\t\\r"', '"\\u3000\\u00a0"']:
        assert code_of(schedule_text(blank)) == "invalid_field"
    padded = parse_command(schedule_text(json.dumps(" " * 100 + "x" * 2000 + " " * 100)))
    assert isinstance(padded, Command) and len(padded.data["new_prompt"]) == 2000  # the cleaned length counts


def test_validate_command_takes_a_decoded_message() -> None:
    ok = protocol.validate_command({"type": "schedule_prompt", "data": {"new_prompt": " p ", "timestamp": 3}, "id": 9})
    assert isinstance(ok, Command) and ok.data == {"new_prompt": "p", "timestamp": 3} and ok.id == 9
    bad = protocol.validate_command({"type": "schedule_prompt", "data": {"new_prompt": "\ud800", "timestamp": 3}})
    assert isinstance(bad, Event) and bad.data["code"] == "invalid_field"
    for not_a_message in [[], "start", None, 3]:
        result = protocol.validate_command(not_a_message)
        assert isinstance(result, Event) and result.data["code"] == "bad_message"


def test_error_messages_quote_client_text_cut_and_escaped() -> None:
    result = parse_command(json.dumps({"type": "x" * 5000}))
    assert isinstance(result, Event) and len(result.data["message"]) < 100
    result = parse_command(json.dumps({"type": "start", **{f"k{i}\n": i for i in range(50)}}))
    assert isinstance(result, Event) and "and 40 more" in result.data["message"]
    assert len(result.data["message"]) < 400


# --- event encoding --------------------------------------------------------------------------------------


def test_to_json_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = protocol.encode_json
    monkeypatch.setattr(protocol, "encode_json", lambda *a: calls.append(a) or real(*a))
    event = Event("state", {"scheduled": [{"timestamp": 0, "prompt": "é"}]})
    texts = {id(event.to_json()) for _ in range(10)}
    assert len(texts) == 1 and len(calls) == 1
    assert event.encoded_size == len(event.to_json().encode("utf-8"))


def test_to_json_never_raises() -> None:
    hostile = Event("error", {"code": "generator_failed", "message": "bad \ud800 text"}, "\udfff")
    text = hostile.to_json()
    text.encode("utf-8")
    assert json.loads(text)["data"]["message"] == "bad \ufffd text"
    odd = Event("progress", {"values": {1, 2}, "object": object(), "number": __import__("numpy").int64(3)})
    assert json.loads(odd.to_json())["data"]["number"] == 3
    circular: dict = {}
    circular["self"] = circular
    broken = json.loads(Event("state", circular).to_json())
    assert broken["type"] == "error" and broken["data"]["code"] == "generator_failed"


def test_fit_json_cuts_a_large_state_once_and_leaves_the_rest() -> None:
    scheduled = [{"timestamp": t, "prompt": "é" * 1000, "frame": t} for t in range(300)]
    event = Event("state", {"status": "idle", "scheduled": scheduled})
    fitted = event.fit_json(100_000)
    assert len(fitted.encode("utf-8")) <= 100_000
    data = json.loads(fitted)["data"]
    assert data["scheduled_truncated"] is True and 0 < len(data["scheduled"]) < 300
    assert event.fit_json(100_000) is fitted  # cached
    small = protocol.progress(3, 9, 0.5)
    assert small.fit_json(100) == small.to_json()
    assert event.fit_json(10**9) == event.to_json()


def test_the_pages_hold_the_servers_limits_and_geometry() -> None:
    """The literals of signaling/static/js are the server's constants (one source per limit, checked here)."""
    import re

    from longlive_rtc.generators.base import Geometry
    from longlive_rtc.generators.stamp import BAND_HEIGHT, TRANSITION_BAND_MIN_HEIGHT
    from longlive_rtc.rtc.hub import SESSION_ID
    from longlive_rtc.schedule import MAX_BLEND_BLOCKS

    static = Path(__file__).resolve().parent.parent / "signaling" / "static"

    def literal(file: str, pattern: str) -> str:
        match = re.search(pattern, (static / "js" / file).read_text(), re.S)
        assert match, (file, pattern)
        return match.group(1)

    def frozen(name: str) -> dict[str, float]:
        body = literal("protocol.js", rf"export const {name} = Object\.freeze\(\{{(.*?)\}}\);")
        return {key: float(value) for key, value in re.findall(r"(\w+):\s*([\d_.]+)", body)}

    limits = {"promptChars": protocol.MAX_PROMPT_CHARS, "timestamp": protocol.MAX_TIMESTAMP, "seed": protocol.MAX_SEED}
    limits["blendBlocks"] = MAX_BLEND_BLOCKS
    assert frozen("LIMITS") == limits
    assert frozen("DEFAULT_GEOMETRY") == Geometry().to_dict()
    assert literal("connection.js", r"const SESSION_ID = /\^(.+?)\$/;") == SESSION_ID.pattern
    assert int(literal("obs.js", r"const STAMP_BAND_ROWS = (\d+);")) == BAND_HEIGHT
    assert int(literal("obs.js", r"const TRANSITION_BAND_MIN_HEIGHT = (\d+);")) == TRANSITION_BAND_MIN_HEIGHT
    # the director's fields take their limits from LIMITS, not from copies in the markup
    assert not re.search(r"\bmax(length)?=", (static / "index.html").read_text(), re.I)


def test_fitting_a_huge_state_encodes_about_the_limit_not_the_whole_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A get_state of 1000 prompts of 2000 characters, asked 20 times a second by each viewer, must not cost a
    re-serialisation of the whole 2 MB schedule per answer (it stalled every session's on-air clock)."""
    encoded: list[int] = []
    real = protocol.encode_json

    def counting(message, what="message"):
        text = real(message, what)
        encoded.append(len(text))
        return text

    monkeypatch.setattr(protocol, "encode_json", counting)
    scheduled = [{"timestamp": 3 * t, "prompt": "x" * 2000, "frame": 3 * t} for t in range(1000)]
    fitted = Event("state", {"status": "running", "scheduled": scheduled}).fit_json(200_000)
    assert len(fitted) <= 200_000 and json.loads(fitted)["data"]["scheduled_truncated"] is True
    assert sum(encoded) < 2 * 200_000, "bounded by the limit"


def test_a_state_is_cut_only_when_it_does_not_fit_whole() -> None:
    for count in (1, 2, 7):
        scheduled = [{"timestamp": t, "prompt": "é" * 40, "frame": t} for t in range(count)]
        whole = len(Event("state", {"status": "idle", "scheduled": scheduled}).to_json().encode("utf-8"))
        for limit in range(whole - 120, whole + 3):
            text = Event("state", {"status": "idle", "scheduled": scheduled}).fit_json(limit)
            data = json.loads(text)["data"]
            assert len(text.encode("utf-8")) <= limit or data["scheduled"] == [], (count, limit)
            assert ("scheduled_truncated" in data) == (limit < whole), (count, limit)
