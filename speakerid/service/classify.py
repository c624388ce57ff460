"""``POST /v1/classify``: the Hugging Face audio-classification protocol, so existing clients
(``huggingface_hub.InferenceClient(model=URL, token=KEY).audio_classification(...)``,
``@huggingface/inference``) can ask who is speaking.

The body is the audio file's raw bytes, with or without a content type, or (when the client passes
parameters such as ``top_k``) JSON ``{"inputs": "<base64>", "parameters": {"top_k": K}}``. The
answer is ``[{"label", "score"}, ...]``, best first: every enrolled speaker and ``"unknown"``.

Scores are a softmax over the speakers' cosine scores divided by :data:`TEMPERATURE`, with
``unknown`` as one more class whose score stands at the calibrated threshold. So ``unknown``
comes first exactly when ``identify`` answers unknown (when two profiles are within the margin,
unknown is put first too), and each score says how the evidence splits, summing to 1.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from .. import validate
from .auth import caller
from .uploads import read_audio, read_body

if TYPE_CHECKING:
    from .app import Service

TEMPERATURE = 0.05


def add(app: FastAPI, service: "Service") -> None:
    sid, gate, config = service.sid, service.gate, service.config

    @app.post("/v1/classify")
    async def classify(request: Request, top_k: int | None = None, key=caller(gate, "client")):
        if request.headers.get("content-type", "").lower().startswith("application/json"):
            data, top_k = await _json_body(request, config.max_upload_bytes, config.idle_seconds, top_k)
        else:
            (data, _), = await read_audio(request, limit=config.max_upload_bytes, idle=config.idle_seconds)
        if top_k is not None:
            top_k = validate.count("top_k", top_k, low=1, high=10_000)
        return await run_in_threadpool(labels, sid, data, top_k)


async def _json_body(request: Request, limit: int, idle: float, top_k: int | None) -> tuple[bytes, int | None]:
    raw = await read_body(request, limit=limit * 4 // 3 + 1024, idle=idle)  # base64 is a third larger
    try:
        body = json.loads(raw)
        data = base64.b64decode(body["inputs"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise HTTPException(422, "a JSON body is {\"inputs\": \"<base64 audio>\", \"parameters\": {...}}") from None
    parameters = body.get("parameters") or {}
    return data, parameters.get("top_k", top_k) if isinstance(parameters, dict) else top_k


def labels(sid, data: bytes, top_k: int | None) -> list[dict]:
    voice = sid.read(data, "upload")
    names, profiles = sid.profiles.matrix()
    threshold = sid.threshold
    scores = profiles @ voice.vector if names else np.zeros(0)
    decision = sid.decide(voice.vector, threshold=threshold, top_k=2)
    unknown = threshold
    if decision.speaker is None and len(scores) and scores.max() >= threshold:  # within the margin: unknown first
        unknown = float(scores.max()) + TEMPERATURE * np.log(2)
    logits = np.concatenate([scores, [unknown]]) / TEMPERATURE
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    ranked = sorted(zip(list(names) + ["unknown"], probabilities), key=lambda x: -x[1])
    return [{"label": label, "score": round(float(p), 6)} for label, p in ranked[:top_k]]
