"""The data-channel protocol: typed commands and events, validation and JSON Schema.

Every message is a JSON object ``{"type": str, "data": {...}, "id"?: str | int}``. Parsing never raises:
:func:`parse_command` returns either a :class:`Command` or an ``error`` :class:`Event` carrying one of
the stable :class:`ErrorCode` strings, echoing the client's ``id`` when one could be read.

This module is the one boundary where client text is checked: bytes must be UTF-8, no accepted string
holds a lone surrogate, prompts are cleaned (surrounding whitespace) and hold no C0 control character
but tab, newline and carriage return. Whatever is accepted can therefore be encoded as UTF-8 again, and
:meth:`Event.to_json` never raises.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from .generators.base import Geometry
from .schedule import BLEND, BLEND_CURVES, LINEAR, MAX_BLEND_BLOCKS, MAX_SCHEDULED_PROMPTS, TRANSITION_MODES

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024
MAX_PROMPT_CHARS = 2000
MAX_TIMESTAMP = 10**7
MAX_SEED = 2**32 - 1
MAX_ID_CHARS = 128
MAX_ID_INT = 2**53 - 1  # exactly representable in every JSON client
COMMAND_BURST = 50  # commands one connection may send at once ...
COMMAND_RATE = 20.0  # ... and a second in the long run (a token bucket)
SCHEDULE_EVENT_INTERVAL = 0.25  # seconds between two schedule_changed of a session at least
EXCERPT_CHARS = 80  # client text quoted back in error messages is cut to this
TEXT_RULES = (
    "Surrounding whitespace is stripped (the length counts what is left); valid Unicode only, no control "
    "characters but tab, newline and carriage return."
)

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # C0 controls but \t \n \r


class ErrorCode(StrEnum):
    """Stable error codes of ``error`` events."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_COMMAND = "unknown_command"
    INVALID_FIELD = "invalid_field"
    NO_INITIAL_PROMPT = "no_initial_prompt"
    ALREADY_RUNNING = "already_running"
    NOT_RUNNING = "not_running"
    NOT_FOUND = "not_found"
    LIMIT_EXCEEDED = "limit_exceeded"
    FORBIDDEN = "forbidden"
    BUSY = "busy"
    GENERATOR_FAILED = "generator_failed"


@dataclass(frozen=True)
class IntField:
    """An integer data field with an inclusive range (JSON booleans are not integers)."""

    minimum: int
    maximum: int


@dataclass(frozen=True)
class StrField:
    """A string data field with a length range in characters.

    ``text`` fields (prompts) are cleaned: surrounding whitespace is stripped before the length check and
    C0 control characters other than tab, newline and carriage return are rejected.
    """

    min_chars: int
    max_chars: int
    text: bool = False


@dataclass(frozen=True)
class TransitionField:
    """The optional ``transition`` object of ``schedule_prompt``: ``{"mode": "recache"}`` (the default),
    ``{"mode": "cut"}`` or ``{"mode": "blend", "blocks": k, "curve"?: "linear" | "slerp"}``."""

    max_blocks: int = MAX_BLEND_BLOCKS


FieldSpec = IntField | StrField | TransitionField

TIMESTAMP = IntField(0, MAX_TIMESTAMP)

#: Commands a client may send: type -> {field name: spec}. Every listed field is required but ``transition``.
COMMANDS: dict[str, dict[str, FieldSpec]] = {
    "schedule_prompt": {
        "new_prompt": StrField(1, MAX_PROMPT_CHARS, text=True),
        "timestamp": TIMESTAMP,
        "transition": TransitionField(),
    },
    "remove_prompt": {"timestamp": TIMESTAMP},
    "start": {},
    "pause": {},
    "resume": {},
    "stop": {},
    "reset": {},
    "set_seed": {"seed": IntField(0, MAX_SEED)},
    "get_state": {},
}

COMMAND_DESCRIPTIONS: dict[str, str] = {
    "schedule_prompt": "Put a prompt at a generation frame; the same frame overwrites. `transition` says how it "
    "switches in (default `recache`; see Transitions).",
    "remove_prompt": "Delete the prompt scheduled at that frame (`not_found` if none).",
    "start": "Begin generating; needs a prompt at frame 0.",
    "pause": "Stop generating; the stream keeps showing the last frame.",
    "resume": "Continue generating from the same frame.",
    "stop": "End generation: frame counter back to 0, generator state dropped; the schedule and seed stay, "
    "so the next `start` replays them from frame 0.",
    "reset": "End generation and clear every prompt: frame counter back to 0, generator state dropped.",
    "set_seed": "Seed used by the next `start`.",
    "get_state": "Answer with a `state` event.",
}

MessageId = str | int


@dataclass(frozen=True)
class Command:
    """A validated client command."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    id: MessageId | None = None


@dataclass(frozen=True)
class Event:
    """A server-to-client message; immutable once sent (its JSON text is computed once and cached)."""

    type: str
    data: dict[str, Any]
    id: MessageId | None = None

    def to_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.type, "data": self.data}
        if self.id is not None:
            message["id"] = self.id
        return message

    def to_json(self) -> str:
        """The compact JSON text (valid UTF-8 when encoded); serialised on the first call only, never raises."""
        return self._json

    @property
    def encoded_size(self) -> int:
        """Bytes of :meth:`to_json` in UTF-8 (cached)."""
        return self._size

    def fit_json(self, limit: int) -> str:
        """JSON text of at most ``limit`` UTF-8 bytes: a ``state`` too large gets its ``scheduled`` list cut
        (flagged ``scheduled_truncated``). Computed once per limit; other events are returned unchanged."""
        fitted = self._fitted
        if limit not in fitted:
            fitted[limit] = _fit(self, limit)
        return fitted[limit]

    def updated(self, data: dict[str, Any]) -> Event:
        """The same event with ``data``'s fields replacing its own."""
        return Event(self.type, {**self.data, **data}, self.id)

    @cached_property
    def _json(self) -> str:
        return encode_json(self.to_dict(), self.type)

    @cached_property
    def _size(self) -> int:
        return utf8_len(self.to_json())

    @cached_property
    def _fitted(self) -> dict[int, str]:
        return {}


def encode_json(message: dict[str, Any], what: str = "message") -> str:
    """Compact JSON text that always encodes to UTF-8; never raises.

    Lone surrogates (which validation keeps out) become U+FFFD; values JSON cannot hold are written as
    strings; a message that cannot be serialised at all becomes an ``error`` event saying so.
    """
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("cannot serialise a %s event: %s", what, exc)
        failure = {"code": str(ErrorCode.GENERATOR_FAILED), "message": f"the server could not encode a {what} event"}
        return json.dumps({"type": "error", "data": failure}, separators=(",", ":"))
    if not text.isascii() and _SURROGATE.search(text):
        log.warning("a %s event held a lone surrogate; replaced by U+FFFD", what)
        text = _SURROGATE.sub("\ufffd", text)
    return text


def utf8_len(text: str) -> int:
    """Bytes of `text` in UTF-8 (without encoding it when it is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars as numbers, sets and tuples as lists, anything else as text."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def _fit(event: Event, limit: int) -> str:
    """``event``'s JSON within ``limit`` bytes, a ``state``'s ``scheduled`` list cut to the entries that fit.

    The cut is found by adding entries until the next would not fit, so the work is bounded by ``limit``
    however long the schedule is (a get_state of a thousand 2000-character prompts, asked again and again,
    must not cost the event loop a re-serialisation of the whole schedule each time).
    """
    scheduled = event.data.get("scheduled")
    if event.type != "state" or not isinstance(scheduled, list):
        return event.to_json()

    def cut(count: int) -> Event:
        return Event("state", {**event.data, "scheduled": scheduled[:count], "scheduled_truncated": True}, event.id)

    room = limit - cut(0).encoded_size
    for count, entry in enumerate(scheduled):
        text = encode_json(entry, "schedule entry")
        room -= utf8_len(text) + (1 if count else 0)  # "," between
        if room < 0:
            whole = count == len(scheduled) - 1 and event.encoded_size <= limit  # fits only without the flag
            return event.to_json() if whole else cut(count).to_json()
    return event.to_json()  # all of it fits (without the flag it is smaller still)


def shorten(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), lone surrogates escaped."""
    return _safe(text if len(text) <= limit else text[: limit - 1] + "…")


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Client text quoted in a message: cut to ``limit`` characters, quoted, non-printables escaped."""
    return repr(shorten(text, limit))


def ack(command: str, message_id: MessageId | None = None) -> Event:
    return Event("ack", {"command": command}, message_id)


def error(
    code: ErrorCode,
    message: str,
    command: str | None = None,
    message_id: MessageId | None = None,
    *,
    retry_after: float | None = None,
) -> Event:
    data: dict[str, Any] = {"code": str(code), "message": message}
    if command is not None:
        data["command"] = command
    if retry_after is not None:
        data["retry_after"] = round(retry_after, 3)
    return Event("error", data, message_id)


def progress(current_start_frame: int, video_frame: int, seconds: float) -> Event:
    return Event(
        "progress",
        {"current_start_frame": current_start_frame, "video_frame": video_frame, "seconds": seconds},
    )


def on_air(timestamp: int, frame: int, video_frame: int, mode: str = "recache", skipped: int = 0) -> Event:
    data = {"timestamp": timestamp, "frame": frame, "video_frame": video_frame, "mode": mode, "skipped": skipped}
    return Event("on_air", data)


def prompt_applied(timestamp: int, frame: int, prompt: str, mode: str = "recache") -> Event:
    return Event("prompt_applied", {"timestamp": timestamp, "frame": frame, "prompt": prompt, "mode": mode})


#: What a ``schedule_changed`` event's ``changes`` hold, in order: op -> (meaning, its fields, required ones).
SCHEDULE_CHANGES: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "put": (
        "The entry at `timestamp`, as `state` lists it: added, or replacing the one there.",
        {
            "timestamp": {"type": "integer", "minimum": 0},
            "prompt": {"type": "string"},
            "frame": {"type": "integer", "minimum": 0, "description": "block start where it applies"},
            "transition": {"type": "object", "description": "as in `state`; absent for the default recache"},
        },
        ["timestamp", "prompt", "frame"],
    ),
    "remove": ("No prompt at `timestamp` any more.", {"timestamp": {"type": "integer", "minimum": 0}}, ["timestamp"]),
    "clear": ("No prompt at all (a `reset`).", {}, []),
    "rewind": (
        "Every entry applies at its own block start again: `frame` becomes the first block start `>=` its "
        "`timestamp` (a `stop`, or a run beginning).",
        {},
        [],
    ),
}


def schedule_changed(version: int, changes: list[dict[str, Any]]) -> Event:
    """The schedule's changes since the previous ``schedule_changed`` (version ``version - 1``)."""
    return Event("schedule_changed", {"version": version, "changes": changes})


def is_snapshot(event: Event) -> bool:
    """A ``state`` that lists the schedule (on join and ``get_state``), not a change of its other fields."""
    return event.type == "state" and "scheduled" in event.data


class ProtocolError(Exception):
    """A rejected message; carries what the ``error`` event needs."""

    def __init__(self, code: ErrorCode, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command = command

    def to_event(self, message_id: MessageId | None = None) -> Event:
        return error(self.code, self.message, self.command, message_id)


def parse_command(raw: str | bytes) -> Command | Event:
    """Parse and validate one client message (JSON text, or UTF-8 bytes); the command or an ``error`` event."""
    try:
        message = _decode(raw)
    except ProtocolError as exc:
        return exc.to_event()
    return validate_command(message)


def validate_command(message: Any) -> Command | Event:
    """Validate one decoded message (a dict, e.g. an HTTP route's JSON body); the command or an ``error``."""
    message_id: MessageId | None = None
    try:
        if not isinstance(message, dict):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message is a JSON object with 'type' and 'data'")
        message_id = _read_id(message)
        return _validate(message, message_id)
    except ProtocolError as exc:
        return exc.to_event(message_id)


def _decode(raw: str | bytes) -> Any:
    if not isinstance(raw, str | bytes):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message is a JSON text")
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.BAD_JSON, f"not UTF-8 text: invalid byte at offset {exc.start}") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {_safe(str(exc))}") from None


def _safe(text: str) -> str:
    """Text that encodes to UTF-8: lone surrogates escaped."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _names(keys: list[Any]) -> str:
    """Unknown keys, quoted and cut (they are client text), at most ten of them."""
    shown = ", ".join(excerpt(str(key), 40) for key in keys[:10])
    return shown + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


def _read_id(message: dict[str, Any]) -> MessageId | None:
    """Return a valid client id, None when absent; an invalid id is reported without echo."""
    if "id" not in message or message["id"] is None:
        return None
    value = message["id"]
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        if _has_surrogate(value):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "'id' holds a lone surrogate: it is not valid Unicode text")
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ID_INT:
        return value
    raise ProtocolError(
        ErrorCode.BAD_MESSAGE, f"'id' must be a string of at most {MAX_ID_CHARS} chars or a safe integer"
    )


def _validate(message: dict[str, Any], message_id: MessageId | None) -> Command:
    unknown = sorted(set(message) - {"type", "data", "id"})
    if unknown:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown top-level keys: {_names(unknown)}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'type' is required and must be a string")
    if kind not in COMMANDS:
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {excerpt(kind, 64)}")
    data = message.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'data' must be a JSON object", kind)
    specs = COMMANDS[kind]
    extra = sorted(set(data) - set(specs))
    if extra:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"unknown fields for {kind}: {_names(extra)}", kind)
    checked: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in data:
            if not _required(spec):
                continue
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' is required", kind)
        checked[name] = _check_field(kind, name, spec, data[name])
    return Command(kind, checked, message_id)


def _required(spec: FieldSpec) -> bool:
    return not isinstance(spec, TransitionField)


def _check_transition(kind: str, name: str, spec: TransitionField, value: Any) -> dict[str, Any]:
    """A transition object, normalised (a blend's ``curve`` filled in), or raise ``invalid_field``."""
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be an object with a 'mode'", kind)
    mode = value.get("mode")
    if not isinstance(mode, str) or mode not in TRANSITION_MODES:
        modes = ", ".join(f"'{m}'" for m in TRANSITION_MODES)
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}.mode' must be one of {modes}", kind)
    allowed = {"mode", "blocks", "curve"} if mode == BLEND else {"mode"}
    extra = sorted(set(value) - allowed, key=str)
    if extra:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"unknown fields for a '{mode}' {name}: {_names(extra)}", kind)
    if mode != BLEND:
        return {"mode": mode}
    if "blocks" not in value:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}.blocks' is required for a blend", kind)
    blocks = _check_field(kind, f"{name}.blocks", IntField(1, spec.max_blocks), value["blocks"])
    curve = value.get("curve", LINEAR)
    if not isinstance(curve, str) or curve not in BLEND_CURVES:
        curves = ", ".join(f"'{c}'" for c in BLEND_CURVES)
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}.curve' must be one of {curves}", kind)
    return {"mode": mode, "blocks": blocks, "curve": curve}


def _check_field(kind: str, name: str, spec: FieldSpec, value: Any) -> Any:
    """The field's value as the command carries it (text fields cleaned), or raise ``invalid_field``."""
    if isinstance(spec, TransitionField):
        return _check_transition(kind, name, spec, value)
    if isinstance(spec, IntField):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be an integer", kind)
        if not spec.minimum <= value <= spec.maximum:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be in {spec.minimum}..{spec.maximum}", kind)
        return value
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be a string", kind)
    if spec.text:
        value = clean_text(value, name, kind)
    elif _has_surrogate(value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' holds a lone surrogate: it is not valid Unicode", kind)
    if not spec.min_chars <= len(value) <= spec.max_chars:
        cleaned = " once surrounding whitespace is stripped" if spec.text else ""
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'{name}' must have {spec.min_chars}..{spec.max_chars} characters{cleaned}", kind
        )
    return value


def clean_text(value: str, name: str = "new_prompt", command: str | None = "schedule_prompt") -> str:
    """A prompt as it is stored: surrounding whitespace stripped; ``invalid_field`` for a lone surrogate or a
    C0 control character other than tab, newline and carriage return."""
    if _has_surrogate(value):
        index = _SURROGATE.search(value).start()  # type: ignore[union-attr]
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'{name}' holds a lone surrogate (U+{ord(value[index]):04X} at index {index}): it is not valid Unicode",
            command,
        )
    control = _CONTROL.search(value)
    if control is not None:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"'{name}' holds the control character U+{ord(control.group()):04X} at index {control.start()}",
            command,
        )
    return value.strip()


# --- JSON Schema -----------------------------------------------------------------------------------------

_ID_SCHEMA = {
    "oneOf": [
        {"type": "string", "maxLength": MAX_ID_CHARS},
        {"type": "integer", "minimum": -MAX_ID_INT, "maximum": MAX_ID_INT},
    ],
    "description": "Client-chosen id, echoed on the ack/error answering this message.",
}

_EVENT_DATA: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "ack": ("A command was accepted.", {"command": {"type": "string"}}, ["command"]),
    "error": (
        "A command was rejected; the channel stays open.",
        {
            "code": {"enum": [str(code) for code in ErrorCode]},
            "message": {"type": "string"},
            "command": {"type": "string"},
            "retry_after": {
                "type": "number",
                "minimum": 0,
                "description": "on limit_exceeded from the command rate: seconds until a command is accepted",
            },
        },
        ["code", "message"],
    ),
    "progress": (
        "After every block is generated and decoded.",
        {
            "current_start_frame": {"type": "integer", "minimum": 0, "description": "next frame to generate"},
            "video_frame": {"type": "integer", "minimum": 0, "description": "video frames produced so far"},
            "seconds": {"type": "number", "minimum": 0, "description": "video time at the content rate"},
        },
        ["current_start_frame", "video_frame", "seconds"],
    ),
    "prompt_applied": (
        "A scheduled prompt took effect at a block start.",
        {
            "timestamp": {"type": "integer", "minimum": 0},
            "frame": {"type": "integer", "minimum": 0},
            "prompt": {"type": "string"},
            "mode": {"enum": list(TRANSITION_MODES), "description": "the transition that switched it in"},
        },
        ["timestamp", "frame", "prompt", "mode"],
    ),
    "on_air": (
        "The first frame of the block that switched a prompt in went on air (to every viewer and output).",
        {
            "timestamp": {"type": "integer", "minimum": 0, "description": "the prompt's scheduled frame"},
            "frame": {"type": "integer", "minimum": 0, "description": "the block start where it applied"},
            "video_frame": {"type": "integer", "minimum": 0, "description": "the video frame now on air"},
            "mode": {"enum": list(TRANSITION_MODES), "description": "the transition that switched it in"},
            "skipped": {
                "type": "integer",
                "minimum": 0,
                "description": "frames of the block on air this block replaced, never shown (`--live-switch asap`)",
            },
        },
        ["timestamp", "frame", "video_frame", "mode", "skipped"],
    ),
    "state": (
        "The session. On connect and on `get_state` it lists the schedule (`scheduled`); after a change of "
        "anything but the schedule (status, seed, a failure; once per burst of commands) it has every field but "
        "`scheduled` (the schedule's changes come as `schedule_changed`).",
        {
            "status": {"enum": ["idle", "running", "paused"]},
            "current_start_frame": {"type": "integer", "minimum": 0},
            "video_frame": {"type": "integer", "minimum": 0},
            "playback_frame": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "the video frame on air when this was sent (null: the idle card)",
            },
            "scheduled": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "timestamp": {"type": "integer"},
                        "prompt": {"type": "string"},
                        "frame": {"type": "integer", "description": "block start where it applies"},
                        "transition": {
                            "type": "object",
                            "description": "how it switches in; absent for the default recache",
                        },
                    },
                    "required": ["timestamp", "prompt"],
                },
            },
            "scheduled_truncated": {
                "type": "boolean",
                "description": "present when the list was cut to fit one data-channel message",
            },
            "schedule_version": {
                "type": "integer",
                "minimum": 0,
                "description": "the `version` of the last `schedule_changed` sent before this event "
                "(`scheduled` is the schedule at that version)",
            },
            "active_prompt": {"type": ["string", "null"]},
            "seed": {"type": "integer"},
            "geometry": {"type": "object"},
            "session": {"type": "string"},
            "generator": {"type": "string"},
            "stalls": {"type": "integer", "minimum": 0, "description": "underruns since the session began"},
            "frames_skipped": {
                "type": "integer",
                "minimum": 0,
                "description": "generated frames never shown since the session began: live prompts' blocks "
                "replaced them (`--live-switch asap`)",
            },
            "controllers": {"type": "integer", "minimum": 0},
            "viewers": {"type": "integer", "minimum": 0},
        },
        ["status", "current_start_frame", "schedule_version", "active_prompt", "seed", "geometry"],
    ),
    "schedule_changed": (
        "After the schedule changed (once per burst of commands): its `changes`, in order, take the schedule "
        "of version `version - 1` to `version`.",
        {
            "version": {"type": "integer", "minimum": 1, "description": "one more than the previous one's"},
            "changes": {"type": "array", "items": {"$ref": "#/$defs/schedule_change"}, "minItems": 1},
        },
        ["version", "changes"],
    ),
}


def _transition_schema(spec: TransitionField) -> dict[str, Any]:
    def mode(name: str, text: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "description": text,
            "properties": {"mode": {"const": name}, **extra},
            "required": ["mode", *(["blocks"] if extra else [])],
            "additionalProperties": False,
        }

    return {
        "description": "How the prompt switches in (default recache); ignored by the prompt that starts a stream.",
        "oneOf": [
            mode("recache", "LongLive's KV-recache: the recent frames are re-encoded under the new prompt."),
            mode("cut", "Hard cut: the generator's context (KV cache) is dropped; the frame counter goes on."),
            mode(
                "blend",
                "The text embeddings move from the prompt in effect to the new one over `blocks` blocks.",
                blocks={"type": "integer", "minimum": 1, "maximum": spec.max_blocks},
                curve={"enum": list(BLEND_CURVES), "default": LINEAR},
            ),
        ],
    }


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    if isinstance(spec, TransitionField):
        return _transition_schema(spec)
    if isinstance(spec, IntField):
        return {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
    schema: dict[str, Any] = {"type": "string", "minLength": spec.min_chars, "maxLength": spec.max_chars}
    if spec.text:
        schema["description"] = TEXT_RULES
    return schema


def _message_schema(kind: str, description: str, data: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "type": {"const": kind},
            "data": {
                "type": "object",
                "properties": data,
                "required": required,
                "additionalProperties": False,
            },
            "id": {"$ref": "#/$defs/id"},
        },
        "required": ["type", "data"] if required else ["type"],
        "additionalProperties": False,
    }


def _schedule_change_schema() -> dict[str, Any]:
    """One of a ``schedule_changed`` event's ``changes``, from :data:`SCHEDULE_CHANGES`."""
    return {
        "oneOf": [
            {
                "type": "object",
                "description": text,
                "properties": {"op": {"const": op}, **fields},
                "required": ["op", *required],
                "additionalProperties": False,
            }
            for op, (text, fields, required) in SCHEDULE_CHANGES.items()
        ]
    }


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every client command and server event."""
    commands = {
        kind: _message_schema(
            kind,
            COMMAND_DESCRIPTIONS[kind],
            {name: _field_schema(spec) for name, spec in specs.items()},
            [name for name, spec in specs.items() if _required(spec)],
        )
        for kind, specs in COMMANDS.items()
    }
    events = {kind: _message_schema(kind, *spec) for kind, spec in _EVENT_DATA.items()}
    for schema in events.values():
        schema["required"] = ["type", "data"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "longlive-rtc data-channel protocol",
        "description": f"JSON text messages of at most {MAX_MESSAGE_BYTES} bytes.",
        "$defs": {
            "id": _ID_SCHEMA,
            **{f"command.{kind}": schema for kind, schema in commands.items()},
            **{f"event.{kind}": schema for kind, schema in events.items()},
            "command": {"oneOf": [{"$ref": f"#/$defs/command.{kind}"} for kind in commands]},
            "event": {"oneOf": [{"$ref": f"#/$defs/event.{kind}"} for kind in events]},
            "schedule_change": _schedule_change_schema(),
        },
        "oneOf": [{"$ref": "#/$defs/command"}, {"$ref": "#/$defs/event"}],
    }


def json_schema_text() -> str:
    """The schema as the stable, indented JSON text embedded in docs/protocol.md."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False)


def render_markdown(http_section: str = "") -> str:
    """docs/protocol.md: the command and event tables and the JSON Schema, generated from this module."""
    rows = []
    for kind, specs in COMMANDS.items():
        fields = ", ".join(f"`{name}` {_describe(spec)}" for name, spec in specs.items()) or "—"
        rows.append(f"| `{kind}` | {fields} | {COMMAND_DESCRIPTIONS[kind]} |")
    events = [f"| `{kind}` | {', '.join(f'`{f}`' for f in data)} | {text} |" for kind, (text, data, _) in
              _EVENT_DATA.items()]  # fmt: skip
    codes = ", ".join(f"`{code}`" for code in ErrorCode)
    g = Geometry()
    return "\n".join(
        [
            "# Data-channel protocol",
            "",
            "<!-- Generated by `longlive-rtc schema --markdown > docs/protocol.md`; a test keeps it current. -->",
            "",
            'JSON text messages `{"type": ..., "data": {...}, "id"?: ...}` over the WebRTC data channel',
            "(any label) or `POST /sessions/{id}/commands`. A message is at most "
            f"{MAX_MESSAGE_BYTES} bytes. `id` (a string of at most {MAX_ID_CHARS} characters or a safe integer)",
            "is echoed on the `ack` or `error` that answers the message. Unknown keys are rejected.",
            "",
            f"Frames are generation (latent) frames; a block is {g.frames_per_block} frames; a prompt applies at "
            "the first block",
            "start `>=` its timestamp, and one scheduled at or before the current frame while a stream is under",
            f"way applies at the next block. Block 0 decodes to {g.video_frames_in_block(0)} video frames, every "
            f"later block to {g.max_video_frames_in_block}",
            f"({g.content_fps:g} fps content).",
            "",
            "## Client to server",
            "",
            "| type | data | effect |",
            "|---|---|---|",
            *rows,
            "",
            "Viewers may only send `get_state`; any other command is answered `forbidden`. A prompt the",
            "generator cannot encode is refused (`invalid_field`) when scheduled; one that fails later, on the",
            "generator, is removed from the schedule and reported (`generator_failed`, naming it and its frame).",
            "",
            f"Limits: a connection may send {COMMAND_BURST} commands at once and {COMMAND_RATE:g} a second in the",
            "long run (HTTP requests are limited per client address); a session schedules at most",
            f"{MAX_SCHEDULED_PROMPTS} prompts. Beyond either, the answer is `limit_exceeded`. Every message gets",
            "exactly one `ack` or `error` at once; the `schedule_changed` and `state` broadcasts that changes",
            "cause come once per burst of commands.",
            "",
            "## Server to client",
            "",
            "| type | data | when |",
            "|---|---|---|",
            *events,
            "",
            f"Error codes (stable): {codes}. An error never closes the channel.",
            "",
            "### When events come",
            "",
            "Generation runs ahead of the screen by at most the playout buffer (one block by default), so the",
            "events say which moment they belong to:",
            "",
            "- `ack` / `error`: at once, in answer to each message.",
            "- `prompt_applied`: when the block that switches the prompt in has been generated and decoded, just",
            "  before it is queued for air; so before that block's `progress` and before its `on_air`. With late",
            "  binding (the default) a block is generated just in time, so this is about one safety margin",
            "  (0.04 to 1 s: at least the largest recent overrun of the block-time estimate, with headroom)",
            "  before the block's first frame is on air. A live prompt (one scheduled at or before the next",
            "  block) starts its block at once, and that block airs as soon as it is generated, in place of the",
            "  rest of the block on air (`serve --live-switch asap`, the default; `on_air`'s `skipped` counts",
            "  the frames never shown); with `--live-switch block-end` it waits for the block on air to end.",
            "- `progress`: when a block entered the playout buffer (generated, decoded, queued); with the default",
            "  one-block buffer its first frame goes on air at the next tick of the on-air clock (1/15 s later).",
            "- `on_air`: when the first frame of the block that switched a prompt in is handed to the viewers'",
            "  encoders and the outputs, by the session's on-air clock (which ticks whether or not anyone",
            "  watches). Always after that prompt's `prompt_applied`; `video_frame` is the frame's index (the",
            "  synthetic generator stamps it into the picture), `mode` the prompt's transition, `skipped` the",
            "  frames before it that were generated but never shown. A client shows it one encode, network and",
            "  decode later.",
            "- `state`: on connect, on `get_state` and after changes (coalesced); `playback_frame` is the video",
            "  frame on air when it was built (null for the idle card). It is not sent per frame: follow",
            "  `on_air` and `progress` for the timeline.",
            "",
            *_schedule_markdown(),
            "",
            *TRANSITIONS_MARKDOWN,
            "",
            *([http_section, ""] if http_section else []),
            "## JSON Schema",
            "",
            "```json",
            json_schema_text(),
            "```",
            "",
        ]
    )


def _schedule_markdown() -> list[str]:
    """The section on following the schedule through ``schedule_changed`` (its table from SCHEDULE_CHANGES)."""
    rows = [f"| `{op}` | {', '.join(f'`{f}`' for f in fields) or '—'} | {text} |"
            for op, (text, fields, _) in SCHEDULE_CHANGES.items()]  # fmt: skip
    return [
        "## Schedule changes",
        "",
        "A member gets the whole schedule in the `state` that greets it (and in each answer to `get_state`);",
        "after that it follows the schedule through `schedule_changed` events, so a change costs the same",
        "whatever the size of the schedule. A `schedule_changed` goes to every member at the end of the",
        "event-loop turn in which the schedule changed, after the `ack`s of the commands that changed it, but",
        f"no sooner than {SCHEDULE_EVENT_INTERVAL:g} s after the previous one: the changes made meanwhile travel",
        "together, in the order they happened (a burst of long prompts may be split over several events; a",
        "`state` goes out after the changes made before it). Changes the engine makes go out the same way:",
        "a `rewind` when a run begins, a `remove` of a prompt the generator could not encode. Each event's",
        "`version` is one more than the previous one's; every `state` carries `schedule_version`, the version",
        "of the last `schedule_changed` sent before it (0: none yet).",
        "",
        "| op | fields | meaning |",
        "|---|---|---|",
        *rows,
        "",
        "The gap rule, for a client holding the schedule at version `v`:",
        "",
        "- a `state` with `scheduled`: take its list and `v = schedule_version`, unless `schedule_version < v`",
        "  (a snapshot sent late while later changes went out at once: keep yours; its other fields are current);",
        "- a `schedule_changed` with `version <= v`: already in what you hold, skip it; with `version == v + 1`:",
        "  apply its `changes` in order and set `v = version`; with `version > v + 1`, or a `state` without",
        "  `scheduled` whose `schedule_version > v`: changes were missed: send `get_state`, keep the",
        "  `schedule_changed` events that arrive meanwhile and apply those above the answer's `schedule_version`.",
    ]


TRANSITIONS_MARKDOWN = [
    "## Transitions",
    "",
    "`schedule_prompt` takes an optional `transition`; it acts at the block where the prompt applies (the",
    "`frame` of its entry) and is listed on that entry in `state` (absent: `recache`). The prompt that",
    "starts a stream (frame 0) has nothing to move from: there it is ignored.",
    "",
    '- `{"mode": "recache"}` (default): LongLive\'s KV-recache. The recent frames are re-encoded under the new',
    "  prompt, so the scene changes while the motion and layout carry on. A prompt equal to the one in",
    "  effect changes nothing.",
    '- `{"mode": "cut"}`: a hard cut (a scene cut). The generator drops its context (LongLive: the KV cache)',
    "  and begins afresh with the new prompt, as a stream started at that frame would; the frame counter,",
    "  the video frame count and the seed's noise stream go on. Applies even when the prompt is unchanged.",
    '- `{"mode": "blend", "blocks": k, "curve": "linear" | "slerp"}` (k in '
    f"1..{MAX_BLEND_BLOCKS}, curve default `linear`):",
    "  the text embeddings move from the conditioning in effect (a mix, if a blend was under way) to the",
    "  new prompt's over k blocks, without a recache: the block at `frame + 3j` (j = 0..k-1) is conditioned",
    "  on `mix(from, to, (j + 1) / k)`, so the k-th block is the new prompt alone. `linear` is",
    "  `(1 - w) from + w to`; `slerp` interpolates each token's embedding vector along the great circle",
    "  (magnitudes mixed linearly). A prompt that applies before the blend ends starts its own transition",
    "  from whatever mix is in effect.",
    "",
    "The synthetic generator shows them: the prompt number in its stamp goes up at every switch, a",
    "recache cross-fades the pictures over the switch block, a cut shows the new scene at once and restarts",
    "its motion, and a blend shows the two scenes mixed at the block's weight; a second band above the",
    "stamp carries the cut count and the blend weight (`longlive_rtc/generators/stamp.py`).",
]


def _describe(spec: FieldSpec) -> str:
    if isinstance(spec, TransitionField):
        return f"optional object (`mode` recache, cut, or blend with `blocks` 1..{spec.max_blocks}, `curve`)"
    if isinstance(spec, IntField):
        return f"int {spec.minimum}..{spec.maximum}"
    cleaned = " (trimmed; no control characters but tab, newline, CR)" if spec.text else ""
    return f"string of {spec.min_chars}..{spec.max_chars} chars{cleaned}"
