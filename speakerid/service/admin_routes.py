"""Endpoints behind the web console: who the key is, the threshold's basis, clip quality while
enrolling, access policy, and the last evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from speakerid.base.errors import UsageError
from speakerid.base.paths import last_evaluation
from speakerid.flows.enrollment import MIN_CLIP_SPEECH, MIN_TOTAL_SPEECH
from speakerid.flows.quality import consistency, level_problem, minimum_consistency, speech_level_dbfs
from speakerid.service.auth import caller
from speakerid.service.uploads import json_body, read_audio, read_model
from speakerid.voice.vad import DEFAULT_MIN_SPEECH

if TYPE_CHECKING:
    from speakerid.service.app import Service


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    principal: str
    resource: str


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float | None = None
    far: float | None = None


def add(app: FastAPI, service: Service) -> None:
    sid, access, gate, config = service.sid, service.access, service.gate, service.config

    client, admin = caller(gate, "client"), caller(gate, "admin")

    @app.get("/v1/whoami")
    def whoami(key=client):
        """The caller's key and role (``admin`` on an open loopback server without keys)."""
        return {
            "key_id": key.id if key else None,
            "role": key.role if key else "admin",
            "name": key.name if key else "",
        }

    @app.get("/v1/threshold")
    def threshold(key=client):
        calibration = sid.calibration()
        return {**calibration.to_dict(), "description": calibration.describe()}

    @app.post("/v1/quality")
    async def quality(request: Request, key=admin):
        """Per-clip feedback before enrolling: speech, level, clipping, and whether the clips sound
        like one person. Nothing is written."""
        uploads = await read_audio(request, limit=config.max_upload_bytes, idle=config.idle_seconds, many=True)
        return await run_in_threadpool(_quality, sid, uploads)

    @app.get("/v1/access/resources")
    def resources(key=admin):
        return {
            "resources": access.resources(),
            "groups": access.groups(),
            "lockout": dict(zip(("attempts", "seconds"), access.lockout)),
        }

    @app.post("/v1/access/grants", status_code=201, openapi_extra=json_body(Grant))
    async def grant(request: Request, key=admin):
        body = await read_model(request, Grant, idle=config.idle_seconds)  # read once the key is checked
        await run_in_threadpool(access.grant, body.principal, body.resource)
        return {"granted": body.principal, "resource": body.resource}

    @app.delete("/v1/access/grants")
    def revoke(principal: str, resource: str, key=admin):
        access.revoke(principal, resource)
        return {"revoked": principal, "resource": resource}

    @app.put("/v1/access/resources/{resource:path}", openapi_extra=json_body(Limits))
    async def limits(request: Request, resource: str, key=admin):
        body = await read_model(request, Limits, idle=config.idle_seconds)
        return await run_in_threadpool(_set_limits, access, sid, resource, body)

    @app.put("/v1/access/groups/{group}/members/{speaker:path}")
    def join(group: str, speaker: str, key=admin):
        access.add_to_group(group, speaker)
        return {"groups": access.groups()}

    @app.delete("/v1/access/groups/{group}/members/{speaker:path}")
    def leave(group: str, speaker: str, key=admin):
        if not access.remove_from_group(group, speaker):
            raise UsageError(f"{speaker} is not in @{group.lstrip('@')}")
        return {"groups": access.groups()}

    @app.get("/v1/eval/latest")
    def latest_eval(key=admin):
        """The last ``speakerid eval voxceleb`` run's figures on this machine, if there is one."""
        import json

        path = last_evaluation() / "latest.json"
        if not path.is_file():
            return {"result": None}
        return {"result": json.loads(path.read_text()), "plot": (last_evaluation() / "latest.png").is_file()}

    @app.get("/v1/eval/latest.png")
    def latest_plot(key=admin):
        path = last_evaluation() / "latest.png"
        if not path.is_file():
            raise UsageError("no evaluation plot yet: run speakerid eval voxceleb --plot")
        return FileResponse(path, media_type="image/png")


def _set_limits(access, sid, resource: str, body: Limits) -> dict:
    if body.threshold is not None and body.far is not None:
        raise UsageError("give a threshold or a false-accept rate, not both")
    if body.far is not None:
        access.set_far(resource, body.far)
    else:
        access.set_threshold(resource, body.threshold)
    return next(r for r in access.resources() if r["resource"] == sid.store.policy.resource(resource).name)


def _quality(sid, uploads: list[tuple[bytes, str]]) -> dict:
    import numpy as np

    clips, vectors = [], []
    for data, name in uploads:
        report = {"clip": name, "problems": []}
        try:
            audio, speech = sid.reader.decode(data, name, min_speech=None)
        except Exception as exc:  # noqa: BLE001 -- any refusal is feedback here, not an error
            report["problems"].append(getattr(exc, "reason", None) or str(exc))
            clips.append(report)
            continue
        report.update(
            seconds=round(audio.seconds, 2),
            speech_seconds=round(speech.seconds, 2),
            level_dbfs=round(speech_level_dbfs(audio, speech), 1),
        )
        if speech.seconds < MIN_CLIP_SPEECH:
            report["problems"].append(
                f"too short: {speech.seconds:.1f} s of speech, a clip needs {MIN_CLIP_SPEECH:g} s"
            )
        problem = level_problem(audio, speech)
        if problem:
            report["problems"].append(problem.split(";")[0])
        if speech.seconds >= DEFAULT_MIN_SPEECH:
            vectors.append((len(clips), sid.reader.embed(speech)))
        clips.append(report)
    if len(vectors) >= 2:
        scores = consistency(np.stack([v for _, v in vectors]))
        bar = minimum_consistency(len(vectors))
        for (i, _), score in zip(vectors, scores):
            clips[i]["consistency"] = round(float(score), 3)
            if score < bar:
                clips[i]["problems"].append("someone else? the voice differs from the other clips")
    total = sum(c.get("speech_seconds", 0) for c in clips if not c["problems"])
    return {"clips": clips, "speech_seconds": round(total, 2), "needed": MIN_TOTAL_SPEECH}
