"""uvicorn's HTTP/1.1 protocol with a deadline for request headers.

uvicorn times out idle keep-alive connections and our routes time out stalled bodies, but nothing
times out a request whose headers arrive one byte at a time ("slowloris"): each such connection is
held open for as long as the client likes. :class:`HeaderDeadline` answers 408 and closes a
connection whose request headers are not complete ``header_seconds`` after it opened or after its
previous response. A request being answered, a body being uploaded (its own idle timeout) and a
WebSocket after its upgrade are not affected.

``speakerid serve`` runs uvicorn with ``http="speakerid.service.protocol:HeaderDeadline"``; the
deadline comes from the service's config (``--header-seconds``).
"""

from __future__ import annotations

import asyncio
import functools

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from speakerid.service.config import ServiceConfig
from speakerid.service.errors import error_response


def timeout_response(seconds: float) -> bytes:
    """The 408 sent before closing, with the service's one error shape.

    >>> timeout_response(10).split(b"\\r\\n")[0]
    b'HTTP/1.1 408 Request Timeout'
    """
    body = error_response(408, f"request headers not complete within {seconds:g} s").body
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )


@functools.cache
def _header_seconds() -> float:
    """The deadline, read once per worker process (uvicorn makes a protocol per connection)."""
    return ServiceConfig.from_env().header_seconds


class HeaderDeadline(H11Protocol):
    """:class:`H11Protocol` that closes connections whose request headers are late (408)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_seconds = _header_seconds()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in: a request (or an upgrade) is under way
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # the next request's headers are due

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(timeout_response(self.header_seconds))
            self.transport.close()
