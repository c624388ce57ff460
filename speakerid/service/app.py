"""The HTTP service: FastAPI over the same :class:`~speakerid.SpeakerID` the CLI uses, model loaded once.

Errors are ``{"error": "..."}`` with a status chosen by the exception's type
(:mod:`speakerid.service.errors`): 401 no or bad key, 403 wrong role, 404 unknown speaker or
resource, 408 stalled upload, 409 name taken, 413 too large or too long, 415 not audio, 422 bad
audio or value, 429 rate limited. An empty query parameter (``?claim=``) counts as left out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from speakerid.api import Options, SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.base.text import printable
from speakerid.service import errors
from speakerid.service.auth import Gate, caller
from speakerid.service.config import ServiceConfig
from speakerid.service.guard import Guard
from speakerid.service.metrics import Metrics

ACCESS_LOG = logging.getLogger("speakerid.access_log")
DECODING = max(2, os.cpu_count() or 1)  # requests decoding and embedding audio at once


def _log_requests(on: bool) -> None:
    """The access log: a line per request on stderr (uvicorn's own is off: it prints query strings)."""
    ACCESS_LOG.propagate = False
    ACCESS_LOG.setLevel(logging.INFO if on else logging.WARNING)
    if on and not ACCESS_LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        ACCESS_LOG.addHandler(handler)


@dataclass
class Service:
    """What every route needs, made once per process. ``decoding`` bounds the requests decoding and
    embedding audio at once (the rest queue), and with it the memory they hold (SECURITY.md)."""

    config: ServiceConfig
    sid: SpeakerID
    access: AccessControl
    gate: Gate
    metrics: Metrics
    decoding: asyncio.Semaphore


class EmptyParametersAreAbsent:
    """ASGI middleware: ``?claim=&resource=door`` means ``?resource=door``. httpx sends a parameter
    given as ``None`` with an empty value, and HTML forms send empty fields; without this, such a
    request was refused as naming the empty speaker (422).

    >>> EmptyParametersAreAbsent.kept(b"claim=&resource=door&&threshold=")
    b'resource=door'
    """

    def __init__(self, app):
        self.app = app

    @staticmethod
    def kept(query: bytes) -> bytes:
        return b"&".join(part for part in query.split(b"&") if part and not part.endswith(b"="))

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope.get("query_string"):
            scope = {**scope, "query_string": self.kept(scope["query_string"])}
        await self.app(scope, receive, send)


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig.from_env()
    sid = SpeakerID.open(
        config.home,
        store=config.store,
        model=config.model,
        device=config.device,
        options=Options(max_seconds=config.max_seconds, background_calibration=True),
    )
    sid.embedder  # noqa: B018 -- load the model now, not on the first request
    _log_requests(config.access_log)
    service = Service(
        config=config,
        sid=sid,
        access=AccessControl(sid),
        gate=Gate(sid.store, config),
        metrics=Metrics(),
        decoding=asyncio.Semaphore(DECODING),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        sid.close()  # on SQLite: folds the write-ahead log in, so erased vectors do not linger there

    app = FastAPI(
        title="speakerid",
        version="0.2.0",
        lifespan=lifespan,
        description="Speaker identification, verification, enrollment and voice access control.",
        docs_url=None,  # no docs UI: Swagger's and ReDoc's pages load scripts from a CDN
        redoc_url=None,
        openapi_url=None,  # served below, behind an admin key like the rest
    )
    app.state.service = service
    app.add_middleware(EmptyParametersAreAbsent)
    app.add_middleware(Guard, loopback=not config.open_to_network, limit=config.max_upload_bytes * 4 // 3 + 65536)
    errors.install(app)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(key=caller(service.gate, "admin")):
        return app.openapi()

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        elapsed = time.perf_counter() - start
        service.metrics.observe(getattr(route, "path", "unmatched"), response.status_code, elapsed)
        ACCESS_LOG.info(
            "%s %s %s %d %.0f ms key=%s",
            request.client.host if request.client else "-",
            request.method,
            printable(request.url.path),
            response.status_code,
            1000 * elapsed,
            getattr(request.state, "key_id", None) or "-",
        )
        return response

    from speakerid.service import admin_routes, classify, console, routes, stream

    routes.add(app, service)
    admin_routes.add(app, service)
    classify.add(app, service)
    stream.add(app, service)
    console.add(app)
    return app
