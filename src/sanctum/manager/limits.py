"""Request body limits: a pure ASGI middleware refusing bodies over a configured size.

Workload routes (``/v1/attest``...) take requests from anyone, so an unbounded body would let
an unauthenticated caller make the manager buffer arbitrary amounts of memory. The middleware
refuses a declared ``Content-Length`` over the limit before reading anything, and counts the
bytes of bodies without one (chunked), refusing as soon as the count passes the limit (any
response the application makes after the aborted read is replaced). The refusal is ``413``
``application/problem+json`` with the code ``request.too_large``.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sanctum.manager.problems import problem_response

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "BodyLimitMiddleware"]

#: The default limit on request bodies (1 MiB).
DEFAULT_MAX_REQUEST_BYTES: Final = 1024 * 1024


class _BodyTooLarge(Exception):  # noqa: N818 (internal control flow, never escapes)
    """Raised from ``receive`` when the body passes the limit."""


class BodyLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes`` with 413 ``request.too_large``."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            Request(scope),
            413,
            "request.too_large",
            f"the request body is larger than {self.max_bytes} bytes",
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, refusing an oversized body (other events pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        received = 0
        too_large = False
        replaced = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The framework may turn the aborted read into its own error response: replace it.
            nonlocal replaced
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start" and not replaced:
                replaced = True
                await self._refuse(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not replaced:
                replaced = True
                await self._refuse(scope, receive, send)
