"""Hostile HTTP requests over every route of the app, as hypothesis strategies, and how they are judged:
never a 5xx (but 503 with Retry-After, a full server), every refusal a JSON body.

The routes come from the app's own router, so a new route is fuzzed as soon as it exists.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from hypothesis import strategies as st

from .hostile_messages import hostile_messages, json_values

SESSION = "fuzz-show"
SCHEDULE = [{"timestamp": 0, "prompt": "a red fox in the snow"}]
FOREIGN_ORIGIN = "http://other-site.invalid"
CONTENT_TYPES = [None, "application/json", "application/sdp", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=zz", "application/json; charset=utf-16", "APPLICATION/JSON",
                 "application/json\u00e9", "*/*"]  # fmt: skip


def route_templates(app: web.Application) -> list[tuple[str, str]]:
    """(method, path template) of every route; the static folder as ``/static/{file}``."""
    routes = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        static = info["prefix"] + "/{file}" if "prefix" in info else None
        template = info.get("path") or info.get("formatter") or static
        if template:
            routes.append((route.method, template))
    return sorted(set(routes))


@dataclass
class Targets:
    """What the cases aim at: a live session, its tokens, a connected peer, a real offer to mangle."""

    url: str
    api_key: str
    offer: str
    tokens: dict[str, str] = field(default_factory=dict)  # "controller" / "viewer"
    peer: str = ""
    keep: set[str] = field(default_factory=set)  # sessions the cases must not free (besides SESSION)
    created: set[str] = field(default_factory=set)  # sessions cases created, freed after each case

    def credential(self, name: str | None) -> str | None:
        return {"api key": self.api_key, "controller": self.tokens.get("controller"),
                "viewer": self.tokens.get("viewer"), "garbage": "x" * 40, "stale": "a.b.c", "empty": "",
                None: None}[name]  # fmt: skip

    async def ensure_session(self, http: aiohttp.ClientSession) -> None:
        """(Re)create the fuzzed session when a case deleted it, and refresh its tokens."""
        auth = {"Authorization": f"Bearer {self.api_key}"}
        async with http.get(f"{self.url}/sessions/{SESSION}", headers=auth) as r:
            if r.status == 200:
                return
        body = {"id": SESSION, "schedule": SCHEDULE, "start": True}
        for _ in range(30):
            async with http.post(f"{self.url}/sessions", json=body, headers=auth) as r:
                created = await r.json()
                if r.status in (429, 503):  # the cases spent this address's budget, or filled the slots
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                assert r.status == 201, created
                break
        self.tokens = created["tokens"] or {}

    def learn(self, case: HttpCase, body: Any) -> None:
        """Follow token rotations the cases cause (the fuzz keeps its credentials current), note the
        sessions they create."""
        if not isinstance(body, dict) or not isinstance(body.get("session"), str):
            return
        if isinstance(body.get("tokens"), dict) and body["session"] == SESSION:
            self.tokens = body["tokens"]
        elif case.method == "POST" and case.template in ("/sessions", "/offer"):
            self.created.add(body["session"])

    async def cleanup(self, http: aiohttp.ClientSession) -> None:
        """Free the sessions cases created (a running one would keep a slot and a core busy)."""
        for session in self.created - self.keep - {SESSION}:
            async with http.delete(f"{self.url}/sessions/{quote(session, safe='')}",
                                   headers={"Authorization": f"Bearer {self.api_key}"}):  # fmt: skip
                pass
        self.created.clear()


@dataclass(frozen=True)
class HttpCase:
    method: str
    template: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None

    def __str__(self) -> str:
        body = "" if self.body is None else f" body {self.body[:80]!r} ({len(self.body)} B)"
        return f"{self.method} {self.path[:100]}{self.query[:60]} {dict(self.headers)}{body}"


def _mangle_sdp(sdp: str, draw) -> str:
    lines = sdp.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["drop", "duplicate", "insert", "truncate", "sections", "candidates",
                                          "swap", "crlf"]))  # fmt: skip
        at = draw(st.integers(0, max(0, len(lines) - 1)))
        if operation == "drop" and lines:
            del lines[at]
        elif operation == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif operation == "insert":
            line = lines[at] if lines else ""
            cut = draw(st.integers(0, len(line)))
            junk = draw(st.one_of(st.text(max_size=12), st.sampled_from(["\x00", "\x1b", "\x85", "\u2028", " ", "="])))
            lines[at:at + 1] = [line[:cut] + junk + line[cut:]]  # fmt: skip
        elif operation == "truncate":
            lines = lines[:at]
        elif operation == "sections":
            video = [line for line in lines if line.startswith(("m=video", "a=rtpmap", "a=mid"))]
            lines += video * draw(st.integers(1, 12))
        elif operation == "candidates":
            count = draw(st.integers(1, 80))
            lines += [f"a=candidate:{k} 1 udp 2130706431 10.9.{k // 250}.{k % 250} {2000 + k} typ host"
                      for k in range(count)]  # fmt: skip
        elif operation == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif operation == "crlf":
            lines = [line + draw(st.sampled_from(["\r", "\n\n", "\r\r\n", ""])) for line in lines]
    return "\r\n".join(lines)


def _sdp(offer: str, draw) -> str:
    """The real offer half the time (so cases reach aiortc), mangled the other half."""
    return _mangle_sdp(offer, draw) if draw(st.booleans()) else offer


def _path_value(name: str, targets: Targets):
    real = SESSION if name == "session" else targets.peer if name == "peer" else "js/api.js"
    guessed = st.binary(min_size=16, max_size=16).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode())
    junk = st.text(min_size=1, max_size=40).map(lambda t: quote(t, safe=""))
    fixed = st.sampled_from(["nope", "p1", "p2", "..", "%2e%2e", "%00", "a" * 2000, "-_-_"])
    return st.one_of(st.just(real), st.just(real), fixed, guessed, junk)


@st.composite
def json_bodies(draw, targets: Targets, template: str) -> bytes:
    keys = ["sdp", "type", "session", "role", "codec", "create", "id", "seed", "schedule", "start", "data"]
    body: dict[str, Any] = {}
    chosen = draw(st.lists(st.sampled_from(keys), max_size=6, unique=True))
    if template == "/offer" and draw(st.booleans()):
        chosen = ["sdp", *chosen[:2]] if "sdp" not in chosen else chosen
    for key in chosen:
        body[key] = draw(st.one_of(json_values, _meaningful(key, targets, draw)))
    if draw(st.booleans()):
        body[draw(st.text(max_size=10))] = draw(json_values)
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def _meaningful(key: str, targets: Targets, draw):
    """Values close to what the route expects, so cases get past the first check."""
    if key == "sdp":
        return st.just(_sdp(targets.offer, draw))
    return {
        "type": st.sampled_from(["offer", "answer", "pranswer", "OFFER", ""]),
        "session": st.sampled_from([SESSION, "nope", "new-session-x", "a" * 65, "bad id!"]),
        "role": st.sampled_from(["controller", "viewer", "admin", ""]),
        "codec": st.sampled_from(["vp8", "h264", "VP8", "av1", ""]),
        "create": st.booleans(),
        "id": st.sampled_from([SESSION, "made-by-fuzz", "x", "a" * 100]),
        "seed": st.sampled_from([0, -1, 2**32, 2**32 - 1, 1.5]),
        "schedule": st.sampled_from([SCHEDULE, [], [{"timestamp": -1, "prompt": "x"}], [{"prompt": "\x00"}], "x"]),
        "start": st.booleans(),
        "data": json_values,
    }[key]


@st.composite
def bodies(draw, targets: Targets, template: str) -> bytes | None:
    kinds = ["none", "empty", "json", "json", "json", "message", "sdp", "bytes", "deep", "huge"]
    if template == "/whep/{session}":
        kinds += ["sdp"] * 4
    elif template.endswith("/commands"):
        kinds += ["message"] * 4
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "empty":
        return b""
    if kind == "json":
        return draw(json_bodies(targets, template))
    if kind == "message":
        payload = draw(hostile_messages).payload
        return payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    if kind == "sdp":
        return _sdp(targets.offer, draw).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "deep":
        return b"[" * draw(st.integers(1, 200_000))
    return b"x" * draw(st.integers(200_000, 400_000))


@st.composite
def http_cases(draw, routes: list[tuple[str, str]], targets: Targets) -> HttpCase:
    """A request to one route; half of them well-formed but for their path or body (so they get deep)."""
    method, template = draw(st.sampled_from(routes))
    sane = draw(st.booleans())
    if not sane and draw(st.integers(0, 9)) == 0:  # now and then a method the route does not have
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    path = template
    for name in re.findall(r"{(\w+)}", template):
        path = path.replace("{" + name + "}", draw(_path_value(name, targets)), 1)
    headers: list[tuple[str, str]] = []
    good = ["api key", "controller", "viewer"]
    credential = targets.credential(draw(st.sampled_from(good if sane else [*good, "garbage", "stale", "empty", None])))
    where = draw(st.sampled_from(["header", "query", "both"]))
    query = ""
    if credential is not None and where in ("header", "both"):
        prefix = "Bearer " if sane else draw(st.sampled_from(["Bearer ", "bearer ", "Basic ", ""]))
        headers.append(("Authorization", prefix + credential))
    if credential is not None and where in ("query", "both"):
        query = "?token=" + quote(credential, safe="")
    fitting = "application/sdp" if template == "/whep/{session}" else "application/json"
    content_type = fitting if sane else draw(st.sampled_from(CONTENT_TYPES))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    origin = None if sane else draw(st.sampled_from([None, targets.url, "null", FOREIGN_ORIGIN]))
    if origin is not None:
        headers.append(("Origin", origin))
    if origin is not None and method == "OPTIONS":
        headers.append(("Access-Control-Request-Method", "POST"))
    body = draw(bodies(targets, template)) if method in ("POST", "PUT", "PATCH", "DELETE") else None
    return HttpCase(method, template, path, query, tuple(headers), body)


async def send(http: aiohttp.ClientSession, url: str, case: HttpCase) -> tuple[int, str, dict[str, str], bytes]:
    """(status, content type, headers, body) of the server's answer."""
    async with http.request(case.method, url + case.path + case.query, data=case.body, headers=dict(case.headers),
                            skip_auto_headers=["Content-Type"]) as r:  # fmt: skip
        return r.status, r.content_type, dict(r.headers), await r.read()


def judge(case: HttpCase, status: int, content_type: str, headers: dict[str, str], body: bytes) -> str | None:
    """None when the answer is acceptable, else what is wrong with it."""
    if status >= 500 and not (status == 503 and "Retry-After" in headers):
        return f"{status} for {case}: {body[:200]!r}"
    if status < 400 or case.method == "HEAD":
        return None
    if content_type != "application/json":
        return f"{status} with {content_type} (not a JSON error) for {case}: {body[:200]!r}"
    try:
        decoded = json.loads(body)
    except ValueError:
        return f"{status} with a body that is not JSON for {case}: {body[:200]!r}"
    if isinstance(decoded, list):  # the commands route answers its reply events
        ok = bool(decoded) and all(isinstance(e, dict) and e.get("type") in ("error", "ack", "state") for e in decoded)
    else:
        error = decoded.get("error") if isinstance(decoded, dict) else None
        ok = isinstance(error, dict) and error.get("status") == status and isinstance(error.get("message"), str)
    return None if ok else f"{status} with an unexpected JSON error for {case}: {body[:200]!r}"
