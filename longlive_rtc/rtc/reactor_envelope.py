"""The Reactor JS SDK's data-channel envelope, translated to and from the protocol's own messages.

The SDK (``@reactor-team/js-sdk``, local mode) opens one data channel, labelled ``data``, and wraps every
message as ``{"scope": "application" | "runtime", "data": {"type": ..., "data": {...}}}``:

- ``application`` messages are the model's commands, i.e. the protocol's commands: they reach the session's
  ``handle`` unwrapped, with the same validation, errors and command budget as our own data channel.
- ``runtime`` messages are the SDK's platform layer: a ``ping`` every 5 s (nothing to answer) and
  ``requestCapabilities`` (answered ``modelCapabilities``, which the SDK's ``ReactorController`` reads);
  any other is answered with an ``error`` in the runtime scope.

Every event leaves wrapped in the ``application`` scope, so an app's message handler receives the
protocol's event as is: ``{type: "progress", data: {current_start_frame, ...}}``, ``state``,
``schedule_changed``, ``prompt_applied``, ``ack``, ``error``. A message with no ``scope`` is taken as a
plain protocol message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .. import protocol
from ..protocol import ErrorCode, Event
from ..session import Member, Role, spend

APPLICATION = "application"
RUNTIME = "runtime"
SCOPES = (APPLICATION, RUNTIME)
#: The model name apps pass as ``modelName``, and the one video track the SDK receives.
MODEL_NAME = "longlive"
VIDEO_TRACK = "main_video"
#: Envelope bytes around the inner message (a generous bound, so that a fitted event stays under its limit).
_OVERHEAD = 64
#: An envelope this much larger than the protocol's message limit is handed on whole (the answer says why).
_SLACK = 1024

Sink = Callable[[Event], None]
Join = Callable[[Role, Sink], Member]
Handle = Callable[..., None]


@dataclass(frozen=True)
class Enveloped(Event):
    """An event as the SDK reads it; its text is built around the wrapped event's cached JSON."""

    scope: str = APPLICATION
    wrapped: Event | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "data": self._inner.to_dict()}

    def to_json(self) -> str:
        return self._around(self._inner.to_json())

    def fit_json(self, limit: int) -> str:
        return self._around(self._inner.fit_json(limit - _OVERHEAD))

    def updated(self, data: dict[str, Any]) -> Event:
        return wrap(self._inner.updated(data), self.scope)

    @property
    def _inner(self) -> Event:
        return self.wrapped if self.wrapped is not None else Event(self.type, self.data, self.id)

    def _around(self, inner: str) -> str:
        return f'{{"scope":"{self.scope}","data":{inner}}}'


def wrap(event: Event, scope: str = APPLICATION) -> Enveloped:
    """``event`` in the SDK's envelope (an event wrapped twice keeps one envelope)."""
    if isinstance(event, Enveloped):
        return event
    return Enveloped(event.type, event.data, event.id, scope, event)


@cache
def command_capabilities() -> tuple[dict[str, Any], ...]:
    """The protocol's commands as the SDK lists them: name, description and a schema per data field.

    Each field's schema is its JSON Schema from :func:`protocol.json_schema`, plus ``required: true`` (every
    field is required; the SDK's ``ReactorController`` reads that flag to mark and check inputs).
    """
    definitions = protocol.json_schema()["$defs"]
    listed = []
    for name, description in protocol.COMMAND_DESCRIPTIONS.items():
        data = definitions[f"command.{name}"]["properties"]["data"]
        required = set(data.get("required", []))
        fields = {key: {**schema, "required": key in required} for key, schema in data["properties"].items()}
        listed.append({"name": name, "description": description, "schema": fields})
    return tuple(listed)


def capabilities_event() -> Enveloped:
    """The runtime answer to ``requestCapabilities``."""
    return wrap(Event("modelCapabilities", {"commands": list(command_capabilities())}), RUNTIME)


def _envelope(raw: str | bytes) -> tuple[str, Any] | None:
    """``(scope, data)`` of an envelope; None for anything else (malformed, too large or unwrapped)."""
    if len(raw) > protocol.MAX_MESSAGE_BYTES + _SLACK:
        return None
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(message, dict) or "scope" not in message:
        return None
    return message["scope"], message.get("data")


class ReactorEnvelope:
    """Adapts a session's ``join`` and ``handle`` to the envelope (what the hub gives a Reactor peer)."""

    def bind(self, join: Join, handle: Handle) -> tuple[Join, Handle]:
        """``join`` and ``handle`` for a peer whose channel speaks the envelope."""

        def enveloped_join(role: Role, send: Sink) -> Member:
            return join(role, lambda event: send(wrap(event)))

        def enveloped_handle(raw: str | bytes, role: Role, reply: Sink, *, member: Member | None = None) -> None:
            self.handle(handle, raw, role, reply, member)

        return enveloped_join, enveloped_handle

    def handle(self, handle: Handle, raw: str | bytes, role: Role, reply: Sink, member: Member | None) -> None:
        """Route one message: application commands to ``handle``, runtime ones answered here."""

        def answer(event: Event) -> None:
            reply(wrap(event))

        envelope = _envelope(raw)
        if envelope is None:  # the protocol's own message, or one it will refuse with the right code
            handle(raw, role, answer, member=member)
            return
        scope, data = envelope
        if scope not in SCOPES:
            scope_text = protocol.excerpt(str(scope), 40)
            answer(protocol.error(ErrorCode.BAD_MESSAGE, f"unknown scope {scope_text}; use 'application'"))
        elif not isinstance(data, dict):
            reply(wrap(protocol.error(ErrorCode.BAD_MESSAGE, "'data' must be an object {type, data}"), scope))
        elif scope == APPLICATION:
            handle(json.dumps(data, ensure_ascii=False), role, answer, member=member)
        else:
            self._runtime(data, reply, member)

    def _runtime(self, message: dict[str, Any], reply: Sink, member: Member | None) -> None:
        kind = message.get("type")
        if kind == "ping":
            return
        limited = spend(member)
        if limited is not None:
            reply(wrap(limited, RUNTIME))
        elif kind == "requestCapabilities":
            reply(capabilities_event())
        else:
            what = protocol.excerpt(str(kind), 64)
            unknown = f"unknown runtime message {what}; this server answers ping and requestCapabilities"
            reply(wrap(protocol.error(ErrorCode.UNKNOWN_COMMAND, unknown), RUNTIME))
