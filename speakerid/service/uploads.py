"""Reading uploaded audio: a multipart form (field ``file``, one or more) or the raw body.

The byte limit counts every byte of the body as it streams in, so neither one huge part nor many
parts can get past it; a body that stalls longer than the idle timeout is dropped (408). Parts are
kept in memory (the limit bounds them), so uploaded voices are never spooled to a temporary file.
Content types are matched case-insensitively; a raw body may come with no content type at all
(Hugging Face's inference clients send none).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.formparsers import MultiPartException, MultiPartParser

JSON_LIMIT = 64 * 1024  # a JSON body that is not audio: grants, a resource's limits
Model = TypeVar("Model", bound=BaseModel)

REFUSED_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "image/")


class _InMemoryParser(MultiPartParser):
    spool_max_size = 1 << 40  # never spool to disk: the byte limit already bounds what arrives


async def _limited(request: Request, limit: int, idle: float) -> AsyncIterator[bytes]:
    total = 0
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=idle)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise HTTPException(408, f"no data for {idle:g} s; upload abandoned") from None
        total += len(chunk)
        if total > limit:
            raise HTTPException(413, f"upload exceeds the limit of {limit} bytes")
        yield chunk


async def read_audio(
    request: Request, *, limit: int, idle: float, many: bool = False, fields: dict[str, str] | None = None
) -> list[tuple[bytes, str]]:
    """``[(bytes, name)]``: the uploaded clips (the first only, unless ``many``). A multipart upload's
    text fields (64 KiB each at most) go into ``fields`` when it is given."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload of {int(declared)} bytes exceeds the limit of {limit} bytes")
    kind = request.headers.get("content-type", "").strip().lower()
    if kind.startswith("multipart/form-data"):
        parser = _InMemoryParser(
            request.headers, _limited(request, limit, idle), max_files=100, max_fields=20, max_part_size=64 * 1024
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, f"malformed multipart upload ({exc.message})") from None
        files = [f for f in form.getlist("file") if hasattr(f, "read")]
        if not files:
            raise HTTPException(422, "multipart upload needs a 'file' field")
        out = [(await f.read(), f.filename or "upload") for f in (files if many else files[:1])]
        if fields is not None:
            fields.update({k: v for k, v in form.multi_items() if isinstance(v, str)})
        await form.close()
        return out
    if kind.startswith(REFUSED_TYPES):
        raise HTTPException(
            415,
            f"content type {kind.split(';')[0]} is not audio; send the file's bytes "
            "(audio/*, application/octet-stream or no content type) or multipart/form-data",
        )
    return [(await read_body(request, limit=limit, idle=idle), "upload")]


async def read_body(request: Request, *, limit: int, idle: float) -> bytes:
    """The raw body, under the same byte limit and idle timeout as audio uploads."""
    body = bytearray()
    async for chunk in _limited(request, limit, idle):
        body += chunk
    return bytes(body)


def parse_json(raw: bytes) -> object:
    """A JSON body, or 422: not JSON, not UTF-8, or nested deeper than Python's parser goes.

    >>> parse_json(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> parse_json(b"[" * 100_000)
    Traceback (most recent call last):
    ...
    fastapi.exceptions.HTTPException: 422: the body is not valid JSON (nested too deeply)
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise HTTPException(422, "the body is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise HTTPException(422, f"the body is not valid JSON ({str(exc)[:80]})") from None


async def read_model(request: Request, model: type[Model], *, idle: float, limit: int = JSON_LIMIT) -> Model:
    """The JSON body as ``model``, read only now (after the route's key check), at most ``limit`` bytes."""
    data = parse_json(await read_body(request, limit=limit, idle=idle))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{' '.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HTTPException(422, problems[:300]) from None


def json_body(model: type[BaseModel]) -> dict:
    """The OpenAPI description of a JSON body a route reads itself (see :func:`read_model`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
