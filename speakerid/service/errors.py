"""One shape for every error the service answers: ``{"error": "<one line>"}``, with the HTTP status
chosen by the exception's class (never by its message), framework errors included."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from speakerid.base.errors import AudioTooLongError, ModelError
from store import ConflictError, InvalidValueError, NotFoundError, ReadOnlyStoreError, SpeakerIDError

log = logging.getLogger(__name__)

# First match wins: subclasses before their bases.
STATUS: list[tuple[type, int]] = [
    (AudioTooLongError, 413),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidValueError, 422),
    (ReadOnlyStoreError, 503),
    (ModelError, 503),
]


class BodyTooLarge(Exception):
    """A request body counted past the service's limit as it streamed in (413)."""

    def __init__(self, limit: int):
        super().__init__(f"body exceeds the limit of {limit} bytes")


def status_of(exc: SpeakerIDError) -> int:
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 500)


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(SpeakerIDError)
    async def known(request: Request, exc: SpeakerIDError):
        return error_response(status_of(exc), str(exc))

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException):
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            where = " ".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
            problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
        return error_response(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return error_response(413, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error answering %s", request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
