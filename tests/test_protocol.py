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
                "active_prompt": None,
                "seed": 0,
                "geometry": {"width": 832},
            },
        ),
    ]
    for event in events:
        jsonschema.validate(json.loads(event.to_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "progress", "data": {"current_start_frame": 3}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "set_seed", "data": {"seed": -1}}, schema)


def test_docs_embed_the_current_schema() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    block = doc.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(block) == protocol.json_schema(), "regenerate with: longlive-rtc schema --markdown"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from([*protocol.COMMANDS, "x", ""]) | st.text(max_size=10)},
    optional={
        "data": st.dictionaries(
            st.sampled_from(["new_prompt", "timestamp", "seed", "other"]) | st.text(max_size=8),
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


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message_like)
def test_fuzz_structured_messages(message: dict) -> None:
    _checked(parse_command(json.dumps(message)))


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_fuzz_arbitrary_text(raw: str | bytes) -> None:
    _checked(parse_command(raw))
