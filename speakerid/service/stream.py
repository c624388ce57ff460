"""``GET /v1/stream``: live audio over a WebSocket, decisions while the person speaks.

Protocol: a JSON start message ``{"type": "start", "sample_rate": 16000, "mode": "identify" |
"verify" | "access" | "enroll", "claim": ..., "resource": ..., "name": ..., "key": ...}`` (the key
may come in the ``Authorization`` header instead, never in the URL); then binary frames of 16-bit
little-endian mono PCM; events come back as JSON (:class:`speakerid.flows.streaming.Event`);
``{"type": "end"}`` asks for the final decision, after which the server closes.

``"enroll"`` (an admin key) reports every second how good the voiceprint would be
(:class:`speakerid.flows.live_enrollment.Progress`, ``"type": "quality"``); at the end it enrolls
``name`` from the speech heard and answers ``{"type": "enrolled", ...}`` (the enrollment's JSON),
or, without a name, the last report and nothing written.

Closing codes: 1000 done; 1003 a malformed message; 1008 a refused key or request, or idle too
long; 1009 a frame or stream over its limit; 1011 an internal error; 1013 too many streams.
Streams share the cores through one first-come-first-served queue per piece of audio, so a client
sending faster than real time waits its turn like everyone else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
from fastapi import FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from speakerid.flows.live_enrollment import LiveEnrollment
from speakerid.service import disclosure
from speakerid.service.auth import presented_key
from speakerid.service.disclosure import is_client
from store import SpeakerIDError

if TYPE_CHECKING:
    from speakerid.service.app import Service

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024  # bytes: 2 s of 16 kHz audio in one frame is plenty


class Closed(Exception):
    def __init__(self, code: int, reason: str):
        self.code, self.reason = code, reason[:120]  # a close reason must fit in a control frame
        super().__init__(self.reason)


def add(app: FastAPI, service: Service) -> None:
    import os

    turns = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    open_streams = 0

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        nonlocal open_streams
        await ws.accept()
        counted = False
        live = None
        try:
            start = await _start_message(ws, service.config.idle_seconds)
            client = ws.client.host if ws.client else "?"
            try:
                needs = "admin" if start["mode"] == "enroll" else "client"
                key = service.gate.admit(presented_key(ws.headers) or str(start.get("key") or ""), client, needs)
            except HTTPException as exc:
                raise Closed(1008, f"{exc.status_code}: {exc.detail}") from None
            if open_streams >= service.config.max_streams:
                raise Closed(1013, f"{open_streams} streams open; try again later")
            open_streams += 1
            counted = True
            if start["threshold"] is not None and is_client(key):
                standing = await run_in_threadpool(lambda: service.sid.threshold)
                if start["threshold"] < standing:
                    raise Closed(1008, "a client key may raise the threshold, not lower it")
            live = await run_in_threadpool(_open, service, start, key, client)
            await _serve(ws, live, service, turns, key)
        except Closed as exc:
            await _abandon(live, f"closed: {exc.reason}")
            await _close(ws, exc.code, exc.reason)
        except WebSocketDisconnect:
            await _abandon(live, "the caller disconnected")
        except SpeakerIDError as exc:
            await _abandon(live, str(exc))
            await _close(ws, 1008, str(exc))
        except Exception:  # noqa: BLE001 -- the connection must end cleanly whatever happened
            log.exception("stream failed")
            await _abandon(live, "internal error")
            await _close(ws, 1011, "internal error; see the server log")
        finally:
            if counted:
                open_streams -= 1


async def _start_message(ws: WebSocket, idle: float) -> dict:
    message = await _receive(ws, idle)
    text = message.get("text")
    if text is None:
        raise Closed(1003, 'the first message is JSON: {"type": "start", "sample_rate": 16000, "mode": ...}')
    try:
        start = json.loads(text)
    except ValueError:
        raise Closed(1003, "the start message is not JSON") from None
    if not isinstance(start, dict) or start.get("type") != "start":
        raise Closed(1003, 'the first message must be {"type": "start", ...}')
    return checked_start(start)


START_FIELDS = {  # field: (types it may have, default); checked before anything is reserved or written
    "type": ((str,), "start"),
    "sample_rate": ((int,), 16000),
    "mode": ((str,), "identify"),
    "claim": ((str, type(None)), None),
    "resource": ((str, type(None)), None),
    "name": ((str, type(None)), None),
    "threshold": ((int, float, type(None)), None),
    "key": ((str, type(None)), None),
}


def checked_start(start: dict) -> dict:
    """The start message with its defaults, or 1003 naming the first field of the wrong type or
    unknown: a malformed start never reserves a lockout attempt nor writes an audit row.

    >>> checked_start({"type": "start", "mode": "verify", "claim": "alice"})["sample_rate"]
    16000
    >>> checked_start({"type": "start", "claim": {}})
    Traceback (most recent call last):
    ...
    speakerid.service.stream.Closed: start message: claim must be text or null, not object
    """
    out = {}
    for field in start:
        if field not in START_FIELDS:
            raise Closed(1003, f"start message: unknown field {str(field)[:40]!r}")
    for field, (types, default) in START_FIELDS.items():
        value = start.get(field, default)
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = "text" if str in types else "a number" if float in types else "an integer"
            raise Closed(
                1003,
                f"start message: {field} must be {wanted}{' or null' if type(None) in types else ''}, "
                f"not {_json_type(value)}",
            )
        out[field] = value
    if out["threshold"] is not None and not math.isfinite(out["threshold"]):
        raise Closed(1003, "start message: threshold must be a finite number")
    return out


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _open(service: Service, start: dict, key, client: str):
    mode, rate = start["mode"], start["sample_rate"]
    if mode == "access":
        if not start["resource"]:
            raise Closed(1008, "access mode needs a resource")
        return service.access.stream(
            start["resource"],
            start["claim"],
            sample_rate=rate,
            key_id=key.id if key else None,
            caller=key.id if key else client,
        )
    if mode == "enroll":
        return service.sid.enroll_stream(start["name"], rate)
    if mode not in ("identify", "verify"):
        raise Closed(1008, f"mode is identify, verify, access or enroll, not {mode!r}")
    return service.sid.stream(
        rate, mode, claim=start["claim"], threshold=start["threshold"], known_claims_only=not is_client(key)
    )


async def _abandon(live, why: str) -> None:
    """A door stream that ends without a final decision is a denial in the audit log."""
    if live is not None and hasattr(live, "abandon"):
        await run_in_threadpool(live.abandon, why)


async def _serve(ws: WebSocket, live, service: Service, turns: asyncio.Semaphore, key) -> None:
    config = service.config
    received = 0
    while True:
        message = await _receive(ws, config.idle_seconds)
        data, text = message.get("bytes"), message.get("text")
        if data is not None:
            if len(data) > MAX_FRAME:
                raise Closed(1009, f"frame of {len(data)} bytes; the limit is {MAX_FRAME}")
            if len(data) % 2:
                raise Closed(1003, "frames are 16-bit PCM: an even number of bytes")
            received += len(data) // 2
            if received / live.rate > config.max_stream_seconds:
                raise Closed(1009, f"stream longer than {config.max_stream_seconds:g} s")
            samples = np.frombuffer(data, dtype="<i2")
            async with turns:
                events = await run_in_threadpool(live.feed, samples)
            for event in events:
                await ws.send_json(disclosure.event(event.to_dict(), key))
            continue
        try:
            command = json.loads(text or "")
        except ValueError:
            raise Closed(1003, 'text messages are JSON, e.g. {"type": "end"}') from None
        if not isinstance(command, dict) or command.get("type") != "end":
            raise Closed(1003, 'the only message after start is {"type": "end"}')
        async with turns:
            final = await run_in_threadpool(live.close)
        answer = final.to_dict()
        if isinstance(live, LiveEnrollment) and "speaker" in answer:
            answer = {"type": "enrolled", **answer}
        await ws.send_json(disclosure.event(answer, key))
        await ws.close(1000, "done")
        return


async def _receive(ws: WebSocket, idle: float) -> dict:
    try:
        message = await asyncio.wait_for(ws.receive(), timeout=idle)
    except TimeoutError:
        raise Closed(1008, f"nothing received for {idle:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    return message


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason[:120])
    except RuntimeError:  # already closed
        pass
