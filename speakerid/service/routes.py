"""The HTTP endpoints: questions (client role) and the voiceprint database (admin role)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from speakerid.base import validate
from speakerid.base.errors import UsageError
from speakerid.service import disclosure
from speakerid.service.auth import caller
from speakerid.service.uploads import read_audio

if TYPE_CHECKING:
    from speakerid.service.app import Service


def add(app: FastAPI, service: Service) -> None:
    sid, access, gate, config = service.sid, service.access, service.gate, service.config

    client, admin = caller(gate, "client"), caller(gate, "admin")

    async def clips(request: Request, many: bool = False, fields: dict | None = None) -> list[tuple[bytes, str]]:
        return await read_audio(
            request, limit=config.max_upload_bytes, idle=config.idle_seconds, many=many, fields=fields
        )

    async def work(function, *args, **kwargs):
        """Decoding and embedding, at most ``service.decoding`` at once (the rest queue)."""
        async with service.decoding:
            return await run_in_threadpool(function, *args, **kwargs)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": sid.embedder.model_id, "speakers": len(sid.store.voiceprints.speakers())}

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus():
        return service.metrics.render(len(sid.store.voiceprints.speakers()))

    @app.post("/v1/identify")
    async def identify(request: Request, top_k: int = 5, threshold: float | None = None, key=client):
        disclosure.no_lower_bar(key, threshold, sid.threshold)
        ((data, name),) = await clips(request)
        result = await work(sid.identify, data, top_k=top_k, threshold=threshold, name=name)
        return disclosure.identification(result.to_dict(), key)

    @app.post("/v1/verify")
    async def verify(request: Request, speaker: str, threshold: float | None = None, key=client):
        disclosure.no_lower_bar(key, threshold, sid.threshold)
        ((data, name),) = await clips(request)
        if not disclosure.is_client(key):
            return (await work(sid.verify, speaker, data, threshold=threshold, name=name)).to_dict()
        verdict, _ = await work(access.verify_claim, speaker, data, key_id=key.id, threshold=threshold, name=name)
        return disclosure.verification(verdict.to_dict(), key)

    @app.post("/v1/access/check")
    async def access_check(request: Request, resource: str, claim: str | None = None, key=client):
        ((data, name),) = await clips(request)
        who = key.id if key else (request.client.host if request.client else None)
        decision = await work(
            access.check, resource, data, claim, key_id=key.id if key else None, caller=who, name=name
        )
        return disclosure.decision(decision.to_dict(), key)

    @app.post("/v1/timeline")
    async def timeline(request: Request, min_turn: float = 0.5, threshold: float | None = None, key=client):
        disclosure.no_lower_bar(key, threshold, sid.threshold)
        ((data, name),) = await clips(request)
        result = await work(sid.timeline, data, threshold=threshold, min_turn=min_turn, name=name)
        return result.to_dict()

    @app.post("/v1/speakers/{speaker:path}/enrollments", status_code=201)
    async def enroll(
        request: Request,
        speaker: str,
        mode: str = "new",
        skip_bad: bool = False,
        allow_similar: bool = False,
        span: Annotated[list[str] | None, Query(max_length=1000)] = None,
        label: str | None = None,
        key=admin,
    ):
        if mode not in ("new", "append", "replace"):
            raise UsageError(f"mode is new, append or replace, not {mode!r}")
        fields: dict[str, str] = {}
        uploads = await clips(request, many=True, fields=fields)
        options = dict(
            replace=mode == "replace", append=mode == "append", skip_bad=skip_bad, allow_similar=allow_similar
        )
        if span or label or "rttm" in fields:  # from someone's turns in one recording
            result = await work(_enroll_turns, sid, speaker, uploads, span, label, fields.get("rttm"), options)
            return result.to_dict()
        result = await work(
            sid.enroll,
            speaker,
            [d for d, _ in uploads],
            replace=mode == "replace",
            append=mode == "append",
            skip_bad=skip_bad,
            labels=[n for _, n in uploads],
            allow_similar=allow_similar,
        )
        return result.to_dict()

    @app.get("/v1/speakers")
    def speakers(key=admin):
        return {
            "speakers": [s.to_dict() for s in sid.store.voiceprints.speakers()],
            "model": sid.store.voiceprints.model,
        }

    @app.get("/v1/speakers/{speaker:path}")
    def speaker(speaker: str, key=admin):
        return sid.store.voiceprints.speaker(speaker).to_dict()

    @app.delete("/v1/speakers/{speaker:path}")
    def delete(speaker: str, key=admin):
        name = sid.store.voiceprints.display_name(speaker)
        sid.remove(name)
        return {"removed": name}

    @app.get("/v1/audit")
    def audit(
        since: str | None = None,
        until: str | None = None,
        resource: str | None = None,
        decision: str | None = None,
        limit: int = 100,
        offset: int = 0,
        key=admin,
    ):
        if decision not in (None, "allow", "deny"):
            raise UsageError(f"decision is allow or deny, not {decision!r}")
        rows = access.audit(
            since=since,
            until=until,
            resource=resource,
            allow=None if decision is None else decision == "allow",
            limit=validate.count("limit", limit, low=1, high=1000),
            offset=validate.count("offset", offset, low=0, high=10**12),
        )
        return {"decisions": rows, "limit": limit, "offset": offset}


def _enroll_turns(sid, speaker: str, uploads, spans: list[str] | None, label: str | None, rttm: str | None, options):
    """``span=START-END`` (repeated), or ``label=L`` with the RTTM text as a multipart field ``rttm``."""
    from speakerid.flows.turns import parse_rttm, turns_of
    from speakerid.voice.audio import SAMPLE_RATE, load_audio

    if len(uploads) != 1:
        raise UsageError(f"enrolling from turns takes one recording, not {len(uploads)}")
    if bool(spans) == bool(label):
        raise UsageError("give the turns: span=START-END (repeated), or label=L with the RTTM as a field 'rttm'")
    if label and not rttm:
        raise UsageError("label needs the RTTM: send it as a multipart text field 'rttm'")
    data, name = uploads[0]
    audio = load_audio(data, name=name, max_seconds=sid.options.max_seconds)
    turns = spans or turns_of(parse_rttm(rttm, "rttm"), Path(name).stem, label, "rttm")
    return sid.enroll_turns(speaker, (audio.samples, SAMPLE_RATE), spans=turns, **options)
