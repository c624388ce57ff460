"""The HTTP service: FastAPI over the same :class:`SpeakerID` the CLI uses, model loaded once.

Audio arrives as a multipart upload (field ``file``) or as a raw body with an ``audio/*`` (or
``application/octet-stream``) content type. Errors are JSON ``{"error": "..."}`` with the CLI's
one-line message: 401 no or bad key, 403 wrong role, 404 unknown speaker or resource,
409 name taken, 413 upload too large or too long, 422 bad audio, 429 rate limited.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from store import ModelMismatchError, SpeakerExistsError, SpeakerNotFoundError, StoreError

from .access import AccessControl, AccessError
from .api import SpeakerID
from .errors import AudioError, SpeakerIDError
from .keys import ApiKey, active_keys_exist, authenticate

log = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    home: Path | None = None
    model: str | None = None
    device: str = "cpu"
    max_upload_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 120.0
    rate_per_second: float = 10.0
    burst: int = 20

    @classmethod
    def from_env(cls) -> "ServiceConfig":
        env = os.environ
        return cls(home=Path(env["SPEAKERID_HOME"]) if env.get("SPEAKERID_HOME") else None,
                   model=env.get("SPEAKERID_MODEL") or None, device=env.get("SPEAKERID_DEVICE", "cpu"),
                   max_upload_bytes=int(float(env.get("SPEAKERID_MAX_UPLOAD_MB", "20")) * 1024 * 1024),
                   max_seconds=float(env.get("SPEAKERID_MAX_SECONDS", "120")),
                   rate_per_second=float(env.get("SPEAKERID_RATE_LIMIT", "10")),
                   burst=int(env.get("SPEAKERID_RATE_BURST", "20")))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, who: str) -> bool:
        if self.rate <= 0:
            return True
        with self._lock:
            tokens, last = self._buckets.get(who, (float(self.burst), time.monotonic()))
            now = time.monotonic()
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[who] = (tokens, now)
                return False
            self._buckets[who] = (tokens - 1, now)
            return True


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.seconds[route] += seconds

    def render(self, speakers: int) -> str:
        lines = ["# HELP speakerid_requests_total HTTP requests by route and status.",
                 "# TYPE speakerid_requests_total counter"]
        with self._lock:
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'speakerid_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += ["# HELP speakerid_request_seconds_total Time spent answering, by route.",
                      "# TYPE speakerid_request_seconds_total counter"]
            for route, s in sorted(self.seconds.items()):
                lines.append(f'speakerid_request_seconds_total{{route="{route}"}} {s:.6f}')
        lines += ["# HELP speakerid_speakers Enrolled speakers.", "# TYPE speakerid_speakers gauge",
                  f"speakerid_speakers {speakers}"]
        return "\n".join(lines) + "\n"


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig.from_env()
    sid = SpeakerID.open(config.home, model=config.model, device=config.device)
    sid.options.max_seconds = config.max_seconds
    sid.embedder  # noqa: B018 -- load the model now, not on the first request
    access = AccessControl(sid)
    limiter = RateLimiter(config.rate_per_second, config.burst)
    metrics = Metrics()
    app = FastAPI(title="speakerid", version="0.1.0",
                  description="Speaker identification, verification, enrollment and voice access control.")

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "unmatched"), response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(SpeakerIDError)
    @app.exception_handler(StoreError)
    async def known_error(request: Request, exc: Exception):
        status = 422
        if isinstance(exc, (SpeakerNotFoundError,)):
            status = 404
        elif isinstance(exc, (SpeakerExistsError, ModelMismatchError)):
            status = 409
        elif isinstance(exc, AccessError):
            status = 404 if "unknown resource" in str(exc) else 400
        elif isinstance(exc, AudioError) and exc.reason.startswith("too long"):
            status = 413
        elif isinstance(exc, StoreError):
            status = 500
        return JSONResponse({"error": str(exc)}, status_code=status)

    def caller(role: str):
        def check(request: Request) -> ApiKey | None:
            who = request.client.host if request.client else "?"
            key = None
            if active_keys_exist(sid.store):
                token = request.headers.get("x-api-key") or ""
                auth = request.headers.get("authorization", "")
                if auth.lower().startswith("bearer "):
                    token = auth[7:].strip()
                if not token:
                    raise HTTPException(401, "missing API key (Authorization: Bearer <key>)")
                key = authenticate(sid.store, token)
                if key is None:
                    raise HTTPException(401, "invalid or revoked API key")
                if role == "admin" and key.role != "admin":
                    raise HTTPException(403, f"this needs an admin key; key {key.id} is a {key.role} key")
                who = key.id
            if not limiter.allow(who):
                raise HTTPException(429, "rate limit exceeded; slow down")
            return key
        return check

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error answering %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def read_audio(request: Request, many: bool = False) -> list[tuple[bytes, str]]:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_upload_bytes:
            raise HTTPException(413, f"upload of {int(declared)} bytes exceeds the limit of {config.max_upload_bytes} bytes")
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_part_size=config.max_upload_bytes)
            files = [f for f in form.getlist("file") if hasattr(f, "read")]
            if not files:
                raise HTTPException(422, "multipart upload needs a 'file' field")
            out = []
            for f in files if many else files[:1]:
                data = await f.read()
                if len(data) > config.max_upload_bytes:
                    raise HTTPException(413, f"{f.filename}: exceeds the upload limit of {config.max_upload_bytes} bytes")
                out.append((data, f.filename or "upload"))
            return out
        if kind.startswith(("audio/", "application/octet-stream")):
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > config.max_upload_bytes:
                    raise HTTPException(413, f"upload exceeds the limit of {config.max_upload_bytes} bytes")
            return [(bytes(body), "upload")]
        raise HTTPException(415, "send audio as multipart/form-data (field 'file') or with an audio/* content type")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": sid.embedder.model_id, "speakers": len(sid.store.speakers())}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus():
        return metrics.render(len(sid.store.speakers()))

    @app.post("/v1/identify")
    async def identify(request: Request, top_k: int = 5, threshold: float | None = None, key=Depends(caller("client"))):
        (data, name), = await read_audio(request)
        result = await run_in_threadpool(sid.identify, data, top_k=top_k, threshold=threshold, name=name)
        return result.to_dict()

    @app.post("/v1/verify")
    async def verify(request: Request, speaker: str, threshold: float | None = None, key=Depends(caller("client"))):
        (data, name), = await read_audio(request)
        return (await run_in_threadpool(sid.verify, speaker, data, threshold=threshold, name=name)).to_dict()

    @app.post("/v1/speakers/{speaker}/enrollments", status_code=201)
    async def enroll(request: Request, speaker: str, mode: str = "new", key=Depends(caller("admin"))):
        if mode not in ("new", "append", "replace"):
            raise HTTPException(422, "mode is new, append or replace")
        uploads = await read_audio(request, many=True)

        def run():
            from enroll.pipeline import enroll_speaker

            return enroll_speaker(sid.store, sid.embedder, sid.profiles, speaker, [d for d, _ in uploads],
                                  replace=mode == "replace", append=mode == "append", threshold=sid.threshold,
                                  max_seconds=config.max_seconds, names=[n for _, n in uploads])
        return (await run_in_threadpool(run)).to_dict()

    @app.get("/v1/speakers")
    def speakers(key=Depends(caller("admin"))):
        return {"speakers": [s.to_dict() for s in sid.store.speakers()], "model": sid.store.model}

    @app.get("/v1/speakers/{speaker}")
    def speaker(speaker: str, key=Depends(caller("admin"))):
        return sid.store.speaker(speaker).to_dict()

    @app.delete("/v1/speakers/{speaker}")
    def delete(speaker: str, key=Depends(caller("admin"))):
        sid.remove(speaker)
        return {"removed": speaker}

    @app.post("/v1/access/check")
    async def access_check(request: Request, resource: str, claim: str | None = None, key=Depends(caller("client"))):
        (data, name), = await read_audio(request)
        decision = await run_in_threadpool(access.check, resource, data, claim, key_id=key.id if key else None, name=name)
        return decision.to_dict()

    return app
