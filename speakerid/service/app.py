"""The HTTP service: FastAPI over the same :class:`~speakerid.SpeakerID` the CLI uses, model loaded once.

Errors are ``{"error": "..."}`` with a status chosen by the exception's type
(:mod:`speakerid.service.errors`): 401 no or bad key, 403 wrong role, 404 unknown speaker or
resource, 408 stalled upload, 409 name taken, 413 too large or too long, 415 not audio, 422 bad
audio or value, 429 rate limited. An empty query parameter (``?claim=``) counts as left out.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from speakerid.api import Options, SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.service import errors
from speakerid.service.auth import Gate
from speakerid.service.config import ServiceConfig
from speakerid.service.metrics import Metrics

ACCESS_LOG = logging.getLogger("speakerid.access_log")


def printable(text: str, limit: int = 200) -> str:
    """Untrusted text as one log line can show it: control characters escaped, length bounded.

    >>> printable("/v1/speakers/a\\nFAKE 200")
    '/v1/speakers/a\\\\nFAKE 200'
    """
    escaped = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


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
    """What every route needs, made once per process."""

    config: ServiceConfig
    sid: SpeakerID
    access: AccessControl
    gate: Gate
    metrics: Metrics


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
        config=config, sid=sid, access=AccessControl(sid), gate=Gate(sid.store, config), metrics=Metrics()
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
    )
    app.state.service = service
    app.add_middleware(EmptyParametersAreAbsent)
    errors.install(app)

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
