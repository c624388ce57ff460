"""The HTTP service: FastAPI over the same :class:`~speakerid.SpeakerID` the CLI uses, model loaded once.

Errors are ``{"error": "..."}`` with a status chosen by the exception's type
(:mod:`speakerid.service.errors`): 401 no or bad key, 403 wrong role, 404 unknown speaker or
resource, 408 stalled upload, 409 name taken, 413 too large or too long, 415 not audio, 422 bad
audio or value, 429 rate limited.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from ..access import AccessControl
from ..api import Options, SpeakerID
from . import errors
from .auth import Gate
from .config import ServiceConfig
from .metrics import Metrics


@dataclass
class Service:
    """What every route needs, made once per process."""

    config: ServiceConfig
    sid: SpeakerID
    access: AccessControl
    gate: Gate
    metrics: Metrics


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig.from_env()
    sid = SpeakerID.open(config.home, store=config.store, model=config.model, device=config.device,
                         options=Options(max_seconds=config.max_seconds))
    sid.embedder  # noqa: B018 -- load the model now, not on the first request
    service = Service(config=config, sid=sid, access=AccessControl(sid), gate=Gate(sid.store, config),
                      metrics=Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        sid.close()  # on SQLite: folds the write-ahead log in, so erased vectors do not linger there

    app = FastAPI(title="speakerid", version="0.2.0", lifespan=lifespan,
                  description="Speaker identification, verification, enrollment and voice access control.")
    app.state.service = service
    errors.install(app)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        service.metrics.observe(getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - start)
        return response

    from . import admin_routes, classify, console, routes, stream

    routes.add(app, service)
    admin_routes.add(app, service)
    classify.add(app, service)
    stream.add(app, service)
    console.add(app)
    return app
