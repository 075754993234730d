"""Hostile data-channel messages as hypothesis strategies, each with the one reply it must get.

Every message is built to be refused (or to be a read-only ``get_state``), so a fuzz run must leave a
session's schedule exactly as its legitimate controller made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import strategies as st

from longlive_rtc.protocol import COMMANDS, MAX_ID_CHARS, MAX_ID_INT, MAX_PROMPT_CHARS, MAX_SEED, MAX_TIMESTAMP

LIMIT = "limit_exceeded"  # any message may meet a spent command budget (or the size limit)
PARSE = frozenset({"bad_json", "bad_message", "unknown_command", "invalid_field"})
MUTATING = tuple(kind for kind in COMMANDS if kind != "get_state")
MAX_WIRE_BYTES = 200_000  # under the 256 KiB data-channel message limit of aiortc and browsers


@dataclass(frozen=True)
class Hostile:
    """A message to send and what its single reply may be."""

    kind: str  # category, for reports
    payload: str | bytes
    codes: frozenset[str]  # error codes the reply may carry; {"ack"}: it must be acked
    ids: frozenset[object]  # ids the reply may echo (None: no id)

    def judge(self, reply: dict) -> str | None:
        """None when ``reply`` is an acceptable answer to this message, else what is wrong with it."""
        if reply.get("id") not in self.ids:
            return f"{self.kind}: reply id {reply.get('id')!r}, expected one of {sorted(map(repr, self.ids))}"
        if reply["type"] == "error" and reply["data"]["code"] == LIMIT:
            return None  # the command budget is spent: refused before anything else, whatever the message
        if self.codes == {"ack"}:
            return None if reply["type"] == "ack" else f"{self.kind}: expected an ack, got {reply}"
        if reply["type"] != "error":
            return f"{self.kind}: a hostile message was accepted: {self.payload[:120]!r} -> {reply}"
        code = reply["data"]["code"]
        if code not in self.codes:
            return f"{self.kind}: code {code!r} not in {sorted(self.codes)} for {self.payload[:120]!r}"
        return None


def _dumps(message: object) -> str:
    return json.dumps(message, ensure_ascii=True)  # lone surrogates go out as \ud800 escapes


ids = st.one_of(st.integers(0, MAX_ID_INT), st.text(max_size=24))
wire = st.sampled_from(["text", "bytes"])


def _as(form: str, text: str) -> str | bytes:
    return text.encode("utf-8") if form == "bytes" else text


@st.composite
def random_bytes(draw) -> Hostile:
    return Hostile("random bytes", draw(st.binary(max_size=400)), PARSE, frozenset({None}))


@st.composite
def random_text(draw) -> Hostile:
    text = draw(st.text(max_size=300).filter(lambda t: not t.lstrip().startswith("{")))
    return Hostile("random text", _as(draw(wire), text), PARSE, frozenset({None}))


INVALID_UTF8 = [b"\xff", b"\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                b"\xe2\x82", b"\x80"]  # fmt: skip


@st.composite
def invalid_utf8(draw) -> Hostile:
    base = _dumps({"type": "get_state", "id": draw(ids)}).encode()
    at = draw(st.integers(0, len(base)))
    return Hostile("invalid UTF-8", base[:at] + draw(st.sampled_from(INVALID_UTF8)) + base[at:],
                   frozenset({"bad_json"}), frozenset({None}))  # fmt: skip


@st.composite
def lone_surrogates(draw) -> Hostile:
    message_id = draw(st.integers(0, 10**6))
    char = chr(draw(st.integers(0xD800, 0xDFFF)))
    text = draw(st.text(max_size=10)) + char + draw(st.text(max_size=10))
    where = draw(st.sampled_from(["id", "type", "prompt", "data key", "top key"]))
    message: dict = {"type": "schedule_prompt", "data": {"new_prompt": "fine", "timestamp": 3}, "id": message_id}
    codes, echoed = frozenset({"invalid_field"}), frozenset({message_id})
    if where == "id":
        message["id"], codes, echoed = text, frozenset({"bad_message"}), frozenset({None})
    elif where == "type":
        message["type"], codes = text, frozenset({"unknown_command"})
    elif where == "prompt":
        message["data"]["new_prompt"] = text
    elif where == "data key":
        message["data"][text] = 1
    else:
        message[text], codes = 1, frozenset({"bad_message"})
    return Hostile(f"lone surrogate in {where}", _as(draw(wire), _dumps(message)), codes, echoed)


@st.composite
def deep_json(draw) -> Hostile:
    depth = draw(st.integers(1, 40_000))
    shape = draw(st.sampled_from(["lists", "objects", "in data", "unclosed"]))
    if shape == "lists":
        text = "[" * depth + "]" * depth
    elif shape == "objects":
        text = '{"a":' * depth + "1" + "}" * depth
    elif shape == "in data":
        text = '{"id":7,"type":"schedule_prompt","data":' + "[" * depth + "]" * depth + "}"
        return Hostile("deep JSON in data", text, PARSE, frozenset({None, 7}))
    else:
        text = "[" * depth
    return Hostile(f"deep JSON ({shape})", text, PARSE, frozenset({None}))


@st.composite
def huge_strings(draw) -> Hostile:
    message_id = draw(st.integers(0, 10**6))
    where = draw(st.sampled_from(["prompt", "id", "type", "data key"]))
    char = draw(st.sampled_from(["x", "é", "字", "😀", " "]))
    size = draw(st.integers(MAX_PROMPT_CHARS + 1, MAX_WIRE_BYTES // len(_dumps(char))))  # JSON escapes: 6-12 B
    big = char * size if char != " " else " " * size + "x" * (MAX_PROMPT_CHARS + 1)
    message: dict = {"type": "schedule_prompt", "data": {"new_prompt": "fine", "timestamp": 3}, "id": message_id}
    codes, echoed = frozenset({"invalid_field"}), frozenset({message_id, None})  # None: over the size limit
    if where == "prompt":
        message["data"]["new_prompt"] = big
    elif where == "id":
        message["id"], codes, echoed = "i" * (MAX_ID_CHARS + draw(st.integers(1, 5000))), frozenset({"bad_message"}), \
            frozenset({None})  # fmt: skip
    elif where == "type":
        message["type"], codes = big, frozenset({"unknown_command"})
    else:
        message["data"][big] = 1
    return Hostile(f"huge string in {where}", _as(draw(wire), _dumps(message)), codes, echoed)


BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e308", "1e309", "-1e308", "-1", "1.5", "0.0", "1e2", "true",
               "false", "null", '"3"', "[]", "{}", str(10**30), str(-(10**30)), str(MAX_TIMESTAMP + 1)]  # fmt: skip
BAD_SEEDS = [*BAD_NUMBERS[:-1], str(MAX_SEED + 1)]


@st.composite
def bad_numbers(draw) -> Hostile:
    message_id = draw(st.integers(0, 10**6))
    where = draw(st.sampled_from(["timestamp", "remove timestamp", "seed", "id"]))
    if where == "timestamp":
        text = f'{{"type":"schedule_prompt","id":{message_id},"data":{{"new_prompt":"n","timestamp":'
        text += draw(st.sampled_from(BAD_NUMBERS)) + "}}"
    elif where == "remove timestamp":
        bad = draw(st.sampled_from(BAD_NUMBERS))
        text = f'{{"type":"remove_prompt","id":{message_id},"data":{{"timestamp":{bad}}}}}'
    elif where == "seed":
        text = f'{{"type":"set_seed","id":{message_id},"data":{{"seed":{draw(st.sampled_from(BAD_SEEDS))}}}}}'
    else:
        bad = draw(st.sampled_from(["NaN", "Infinity", "1e308", "1.5", "true", "[]", "{}", str(MAX_ID_INT + 1)]))
        return Hostile("bad number in id", f'{{"type":"get_state","id":{bad}}}', frozenset({"bad_message"}),
                       frozenset({None}))  # fmt: skip
    return Hostile(f"bad number in {where}", text, frozenset({"invalid_field"}), frozenset({message_id}))


@st.composite
def duplicate_keys(draw) -> Hostile:
    """The last duplicate wins in JSON decoding; here the last one always carries the defect."""
    message_id = draw(st.integers(0, 10**6))
    first = draw(st.sampled_from(MUTATING))
    shape = draw(st.sampled_from(["type", "field", "id"]))
    if shape == "type":
        text = f'{{"id":{message_id},"type":"{first}","type":"no_such_command"}}'
        return Hostile("duplicate type", text, frozenset({"unknown_command"}), frozenset({message_id}))
    if shape == "field":
        data = '{"new_prompt":"dup","timestamp":3,"timestamp":-1}'
        text = f'{{"id":{message_id},"type":"schedule_prompt","data":{data}}}'
        return Hostile("duplicate field", text, frozenset({"invalid_field"}), frozenset({message_id}))
    text = f'{{"id":{message_id},"type":"{first}","id":"\\ud800"}}'
    return Hostile("duplicate id", text, frozenset({"bad_message"}), frozenset({None}))


@st.composite
def unknown_types(draw) -> Hostile:
    message_id = draw(ids)
    kind = draw(st.one_of(st.text(max_size=40).filter(lambda k: k not in COMMANDS),
                          st.sampled_from([k.upper() for k in COMMANDS] + [f" {k}" for k in COMMANDS]),
                          st.integers(), st.none(), st.lists(st.integers(), max_size=3), st.booleans()))  # fmt: skip
    message = {"type": kind, "id": message_id, "data": {}}
    if draw(st.booleans()):
        del message["type"]
    codes = frozenset({"unknown_command"}) if isinstance(message.get("type"), str) else frozenset({"bad_message"})
    return Hostile("unknown type", _as(draw(wire), _dumps(message)), codes, frozenset({message_id}))


json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)  # fmt: skip


def _wrong_value(spec_name: str):
    """JSON values a field named ``spec_name`` must refuse."""
    if spec_name == "new_prompt":
        bad_text = st.sampled_from(["", "   ", "\x00", "a\x00b", "\x1b[31m red", "\x07", "\x7f\x01"])
        return st.one_of(json_values.filter(lambda v: not isinstance(v, str)), bad_text)
    return json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > MAX_SEED)


@st.composite
def wrong_fields(draw) -> Hostile:
    message_id = draw(st.integers(0, 10**6))
    kind = draw(st.sampled_from(MUTATING))
    specs = COMMANDS[kind]
    data: dict = {"new_prompt": "wrong", "timestamp": 3} if kind == "schedule_prompt" else {}
    if kind == "remove_prompt":
        data = {"timestamp": 3}
    elif kind == "set_seed":
        data = {"seed": 1}
    defect = draw(st.sampled_from(["data not an object", "extra field", "missing field", "wrong value", "extra key"]))
    required = sorted(data)  # what a missing or wrong field is drawn from (not optional ones like `transition`)
    if defect in ("missing field", "wrong value") and not required:
        defect = "extra field"
    codes = frozenset({"invalid_field"})
    message: dict = {"type": kind, "id": message_id, "data": data}
    if defect == "data not an object":
        message["data"] = draw(json_values.filter(lambda v: v is not None and not isinstance(v, dict)))
        codes = frozenset({"bad_message"})
    elif defect == "extra field":
        data[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in specs))] = draw(json_values)
    elif defect == "missing field":
        del data[draw(st.sampled_from(required))]
    elif defect == "wrong value":
        name = draw(st.sampled_from(required))
        data[name] = draw(_wrong_value(name))
    else:
        message[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in ("type", "data", "id")))] = 1
        codes = frozenset({"bad_message"})
    return Hostile(f"wrong field ({defect})", _as(draw(wire), _dumps(message)), codes, frozenset({message_id}))


@st.composite
def not_objects(draw) -> Hostile:
    value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    return Hostile("not an object", _as(draw(wire), _dumps(value)), frozenset({"bad_message"}), frozenset({None}))


@st.composite
def refused_while_running(draw) -> Hostile:
    """Well-formed commands the running stream refuses (nothing changes)."""
    message_id = draw(ids)
    kind = draw(st.sampled_from(["start", "resume"]))
    return Hostile(f"{kind} while running", _dumps({"type": kind, "id": message_id}),
                   frozenset({"already_running"}), frozenset({message_id}))  # fmt: skip


@st.composite
def read_only(draw) -> Hostile:
    message_id = draw(ids)
    return Hostile("get_state", _as(draw(wire), _dumps({"type": "get_state", "id": message_id})), frozenset({"ack"}),
                   frozenset({message_id}))  # fmt: skip


hostile_messages = st.one_of(random_bytes(), random_text(), invalid_utf8(), lone_surrogates(), deep_json(),
                             huge_strings(), bad_numbers(), duplicate_keys(), unknown_types(), wrong_fields(),
                             not_objects(), refused_while_running(), read_only())  # fmt: skip


@dataclass(frozen=True)
class Batch:
    """Messages sent one after the other (paced under the command budget), or all at once as a burst."""

    messages: tuple[Hostile, ...]
    burst: bool = False


@st.composite
def batches(draw, max_size: int = 20, burst_size: int = 200) -> Batch:
    if draw(st.integers(0, 19)) == 0:  # one batch in twenty: a burst of one message, repeated
        message = draw(hostile_messages.filter(lambda m: m.codes != {"ack"}))
        return Batch((message,) * draw(st.integers(burst_size // 2, burst_size)), burst=True)
    return Batch(tuple(draw(st.lists(hostile_messages, min_size=1, max_size=max_size))))
