"""The data-channel protocol: typed commands and events, validation and JSON Schema.

Every message is a JSON object ``{"type": str, "data": {...}, "id"?: str | int}``. Parsing never raises:
:func:`parse_command` returns either a :class:`Command` or an ``error`` :class:`Event` carrying one of
the stable :class:`ErrorCode` strings, echoing the client's ``id`` when one could be read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_MESSAGE_BYTES = 16 * 1024
MAX_PROMPT_CHARS = 2000
MAX_TIMESTAMP = 10**7
MAX_SEED = 2**32 - 1
MAX_ID_CHARS = 128
MAX_ID_INT = 2**53 - 1  # exactly representable in every JSON client


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
    """A string data field with a length range in characters."""

    min_chars: int
    max_chars: int


FieldSpec = IntField | StrField

TIMESTAMP = IntField(0, MAX_TIMESTAMP)

#: Commands a client may send: type -> {field name: spec}. Every listed field is required.
COMMANDS: dict[str, dict[str, FieldSpec]] = {
    "schedule_prompt": {"new_prompt": StrField(1, MAX_PROMPT_CHARS), "timestamp": TIMESTAMP},
    "remove_prompt": {"timestamp": TIMESTAMP},
    "start": {},
    "pause": {},
    "resume": {},
    "reset": {},
    "set_seed": {"seed": IntField(0, MAX_SEED)},
    "get_state": {},
}

COMMAND_DESCRIPTIONS: dict[str, str] = {
    "schedule_prompt": "Put a prompt at a generation frame; the same frame overwrites.",
    "remove_prompt": "Delete the prompt scheduled at that frame (`not_found` if none).",
    "start": "Begin generating; needs a prompt at frame 0.",
    "pause": "Stop generating; the stream keeps showing the last frame.",
    "resume": "Continue generating from the same frame.",
    "reset": "Stop, clear every prompt, frame counter back to 0, generator state dropped.",
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
    """A server-to-client message."""

    type: str
    data: dict[str, Any]
    id: MessageId | None = None

    def to_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.type, "data": self.data}
        if self.id is not None:
            message["id"] = self.id
        return message

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def ack(command: str, message_id: MessageId | None = None) -> Event:
    return Event("ack", {"command": command}, message_id)


def error(code: ErrorCode, message: str, command: str | None = None, message_id: MessageId | None = None) -> Event:
    data: dict[str, Any] = {"code": str(code), "message": message}
    if command is not None:
        data["command"] = command
    return Event("error", data, message_id)


def progress(current_start_frame: int, video_frame: int, seconds: float) -> Event:
    return Event(
        "progress",
        {"current_start_frame": current_start_frame, "video_frame": video_frame, "seconds": seconds},
    )


def prompt_applied(timestamp: int, frame: int, prompt: str) -> Event:
    return Event("prompt_applied", {"timestamp": timestamp, "frame": frame, "prompt": prompt})


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
    """Parse and validate one client message; returns the command or an ``error`` event."""
    message_id: MessageId | None = None
    try:
        message = _decode(raw)
        message_id = _read_id(message)
        return _validate(message, message_id)
    except ProtocolError as exc:
        return exc.to_event(message_id)


def _decode(raw: str | bytes) -> dict[str, Any]:
    if not isinstance(raw, str | bytes):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message is a JSON text")
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message is a JSON object with 'type' and 'data'")
    return message


def _read_id(message: dict[str, Any]) -> MessageId | None:
    """Return a valid client id, None when absent; an invalid id is reported without echo."""
    if "id" not in message or message["id"] is None:
        return None
    value = message["id"]
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ID_INT:
        return value
    raise ProtocolError(
        ErrorCode.BAD_MESSAGE, f"'id' must be a string of at most {MAX_ID_CHARS} chars or a safe integer"
    )


def _validate(message: dict[str, Any], message_id: MessageId | None) -> Command:
    unknown = sorted(set(message) - {"type", "data", "id"})
    if unknown:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"unknown top-level keys: {', '.join(map(str, unknown))}")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'type' is required and must be a string")
    if kind not in COMMANDS:
        shown = kind if len(kind) <= 64 else kind[:64] + "..."
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {shown!r}")
    data = message.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'data' must be a JSON object", kind)
    specs = COMMANDS[kind]
    extra = sorted(set(data) - set(specs))
    if extra:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"unknown fields for {kind}: {', '.join(extra)}", kind)
    for name, spec in specs.items():
        if name not in data:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' is required", kind)
        _check_field(kind, name, spec, data[name])
    return Command(kind, dict(data), message_id)


def _check_field(kind: str, name: str, spec: FieldSpec, value: Any) -> None:
    if isinstance(spec, IntField):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be an integer", kind)
        if not spec.minimum <= value <= spec.maximum:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be in {spec.minimum}..{spec.maximum}", kind)
        return
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{name}' must be a string", kind)
    if not spec.min_chars <= len(value) <= spec.max_chars:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'{name}' must have {spec.min_chars}..{spec.max_chars} characters", kind
        )


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
        },
        ["timestamp", "frame", "prompt"],
    ),
    "state": (
        "On connect, on every change and on get_state.",
        {
            "status": {"enum": ["idle", "running", "paused"]},
            "current_start_frame": {"type": "integer", "minimum": 0},
            "video_frame": {"type": "integer", "minimum": 0},
            "scheduled": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "timestamp": {"type": "integer"},
                        "prompt": {"type": "string"},
                        "frame": {"type": "integer", "description": "block start where it applies"},
                    },
                    "required": ["timestamp", "prompt"],
                },
            },
            "scheduled_truncated": {
                "type": "boolean",
                "description": "present when the list was cut to fit one data-channel message",
            },
            "active_prompt": {"type": ["string", "null"]},
            "seed": {"type": "integer"},
            "geometry": {"type": "object"},
            "session": {"type": "string"},
            "generator": {"type": "string"},
            "stalls": {"type": "integer", "minimum": 0, "description": "underruns since the session began"},
            "controllers": {"type": "integer", "minimum": 0},
            "viewers": {"type": "integer", "minimum": 0},
        },
        ["status", "current_start_frame", "scheduled", "active_prompt", "seed", "geometry"],
    ),
}


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    if isinstance(spec, IntField):
        return {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
    return {"type": "string", "minLength": spec.min_chars, "maxLength": spec.max_chars}


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


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every client command and server event."""
    commands = {
        kind: _message_schema(
            kind,
            COMMAND_DESCRIPTIONS[kind],
            {name: _field_schema(spec) for name, spec in specs.items()},
            list(specs),
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
        },
        "oneOf": [{"$ref": "#/$defs/command"}, {"$ref": "#/$defs/event"}],
    }


def json_schema_text() -> str:
    """The schema as the stable, indented JSON text embedded in docs/protocol.md."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False)


def render_markdown() -> str:
    """docs/protocol.md: the command and event tables and the JSON Schema, generated from this module."""
    rows = []
    for kind, specs in COMMANDS.items():
        fields = ", ".join(f"`{name}` {_describe(spec)}" for name, spec in specs.items()) or "—"
        rows.append(f"| `{kind}` | {fields} | {COMMAND_DESCRIPTIONS[kind]} |")
    events = [f"| `{kind}` | {', '.join(f'`{f}`' for f in data)} | {text} |" for kind, (text, data, _) in
              _EVENT_DATA.items()]  # fmt: skip
    codes = ", ".join(f"`{code}`" for code in ErrorCode)
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
            "Frames are generation (latent) frames; a block is 3 frames; a prompt applies at the first block",
            "start `>=` its timestamp, and one scheduled at or before the current frame while a stream is under",
            "way applies at the next block. Block 0 decodes to 9 video frames, every later block to 12",
            "(16 fps content).",
            "",
            "## Client to server",
            "",
            "| type | data | effect |",
            "|---|---|---|",
            *rows,
            "",
            "Viewers may only send `get_state`; any other command is answered `forbidden`.",
            "",
            "## Server to client",
            "",
            "| type | data | when |",
            "|---|---|---|",
            *events,
            "",
            f"Error codes (stable): {codes}. An error never closes the channel.",
            "",
            "## JSON Schema",
            "",
            "```json",
            json_schema_text(),
            "```",
            "",
        ]
    )


def _describe(spec: FieldSpec) -> str:
    if isinstance(spec, IntField):
        return f"int {spec.minimum}..{spec.maximum}"
    return f"string of {spec.min_chars}..{spec.max_chars} chars"
