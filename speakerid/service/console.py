"""The web console at ``/console``: plain HTML, CSS and JavaScript (no build step, no library)
served by the same app, calling the same API with the same keys. Every console response carries a
strict Content-Security-Policy (scripts only from this origin, none inline), and the API's
responses forbid framing and sniffing too."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse

FILES = Path(__file__).with_name("console")
TYPES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "media-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cache-Control": "no-store",
}


def add(app: FastAPI) -> None:
    @app.get("/console", include_in_schema=False)
    def console_root():
        return RedirectResponse("/console/")

    @app.get("/console/", include_in_schema=False)
    def console_index():
        return FileResponse(FILES / "index.html", media_type=TYPES["index.html"], headers=HEADERS)

    @app.get("/console/{name}", include_in_schema=False)
    def console_file(name: str):
        if name not in TYPES:
            raise HTTPException(404, f"no console file {name!r}")
        return FileResponse(FILES / name, media_type=TYPES[name], headers=HEADERS)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response
