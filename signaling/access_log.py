"""The HTTP access log (``--log-level debug``): one line per request, with no token in it.

Links carry session tokens and the API key as ``?token=`` (OBS and shared links cannot set headers), and
aiohttp's own access log writes the request line as it came; this one writes ``token=***`` instead.
"""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

TOKEN_VALUE = re.compile(r"(?i)([?&]token=)[^&#]*")


def without_tokens(path_qs: str) -> str:
    """``path_qs`` with every ``token`` query value replaced by ``***``."""
    return TOKEN_VALUE.sub(r"\1***", path_qs)


class AccessLog(AbstractAccessLogger):
    """Remote address, request line (tokens hidden), status, body bytes and seconds of each request."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        self.logger.info(
            '%s "%s %s %s" %d %d %.3fs', request.remote, request.method, without_tokens(request.path_qs), version,
            response.status, response.body_length, time,
        )  # fmt: skip
