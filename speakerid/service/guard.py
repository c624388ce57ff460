"""What every request meets before any route: where it may come from, and how much it may send.

- **Host**: a server on a loopback address answers only requests that name a loopback host
  (``127.0.0.1``, ``localhost``, ``[::1]``, with any port). A web page the operator visits cannot
  reach it through a DNS name rebound to 127.0.0.1 ("DNS rebinding"): its requests carry that
  name. 421 otherwise.
- **Origin**: a browser names the page a request comes from; one from another origin than the
  server's own (the console's) is refused, HTTP and WebSocket alike, so a web page cannot enroll
  or identify through the operator's browser. Requests without an Origin (curl, scripts, the
  Hugging Face clients) are not browsers' cross-site requests. 403 otherwise.
- **Body size**: every HTTP body is counted as it streams in, before any route or key check
  reads it: over ``limit`` bytes (a declared ``Content-Length`` too) the request is answered 413
  and nothing more is read. Routes set tighter limits of their own (JSON bodies: 64 KiB).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from speakerid.service.errors import BodyTooLarge, error_response

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def host_of(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc, lowercase, without port or brackets.

    >>> host_of("LocalHost:8000"), host_of("[::1]:9"), host_of("evil.example")
    ('localhost', '::1', 'evil.example')
    """
    try:
        return (urlsplit("//" + value).hostname or "").lower()
    except ValueError:
        return ""


class Guard:
    """ASGI middleware; see the module docstring. ``loopback``: the server listens on loopback only."""

    def __init__(self, app, *, loopback: bool, limit: int):
        self.app, self.loopback, self.limit = app, loopback, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        problem = None
        if self.loopback and host_of(host) not in LOOPBACK_NAMES:
            problem = (421, f"this server answers requests for 127.0.0.1 or localhost, not {host_of(host)[:60]!r}")
        origin = headers.get("origin")
        if problem is None and origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            if parts is None or parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                problem = (403, f"cross-site request from {origin[:80]!r} refused")
        if problem is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": problem[1][:120]})
                return None
            return await error_response(*problem)(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return await error_response(413, f"body of {int(declared)} bytes exceeds the limit of {self.limit}")(
                scope, receive, send
            )
        return await self.app(scope, self._counted(receive, scope, send), send)

    def _counted(self, receive, scope, send):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        return counted
