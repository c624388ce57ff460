"""``POST /v1/classify``: the Hugging Face audio-classification protocol, so existing clients
(``huggingface_hub.InferenceClient(model=URL, token=KEY).audio_classification(...)``,
``@huggingface/inference``) can ask who is speaking.

The body is the audio file's raw bytes, with or without a content type, or (when the client passes
parameters such as ``top_k``) JSON ``{"inputs": "<base64>", "parameters": {"top_k": K}}``. The
answer is ``[{"label", "score"}, ...]``, best first: every enrolled speaker and ``"unknown"``.

How the scores are made is the decider's (:meth:`speakerid.decide.decider.Decider.classify`): a
softmax over the cosines with ``unknown`` as one more class at the threshold, so ``unknown`` comes
first exactly when ``identify`` answers unknown.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from speakerid.base import validate
from speakerid.service import disclosure
from speakerid.service.auth import caller
from speakerid.service.uploads import parse_json, read_audio, read_body

if TYPE_CHECKING:
    from speakerid.service.app import Service


def add(app: FastAPI, service: Service) -> None:
    sid, gate, config = service.sid, service.gate, service.config

    @app.post("/v1/classify")
    async def classify(request: Request, top_k: int | None = None, key=caller(gate, "client")):
        if request.headers.get("content-type", "").lower().startswith("application/json"):
            data, top_k = await _json_body(request, config.max_upload_bytes, config.idle_seconds, top_k)
        else:
            ((data, _),) = await read_audio(request, limit=config.max_upload_bytes, idle=config.idle_seconds)
        if top_k is not None:
            top_k = validate.count("top_k", top_k, low=1, high=10_000)
        async with service.decoding:
            ranked = await run_in_threadpool(sid.classify, data, name="upload")
        return disclosure.labels(ranked, key, top_k)


async def _json_body(request: Request, limit: int, idle: float, top_k: int | None) -> tuple[bytes, int | None]:
    body = parse_json(await read_body(request, limit=limit * 4 // 3 + 1024, idle=idle))  # base64 is a third larger
    try:
        data = base64.b64decode(body["inputs"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise HTTPException(422, 'a JSON body is {"inputs": "<base64 audio>", "parameters": {...}}') from None
    parameters = body.get("parameters") or {}
    return data, parameters.get("top_k", top_k) if isinstance(parameters, dict) else top_k
