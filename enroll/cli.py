"""The ``enroll-speaker`` command: enroll one speaker from clips or folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speakerid.cli.common import (
    ArgumentParser,
    UsageError,
    common_options,
    emit,
    finite,
    main_of,
    open_speakerid,
    plural,
    warn,
)
from speakerid.flows.enrollment import MIN_CLIP_SPEECH, MIN_TOTAL_SPEECH


def parse_meta(pairs: list[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta takes key=value, got {pair!r}")
        meta[key] = value
    return meta


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="enroll-speaker",
        parents=[common_options()],
        description="Enroll a speaker from one or more clips (files or folders of audio). All clips are decoded, "
        "checked and embedded before anything is written: one bad clip fails the command, names the "
        "file, and leaves the store untouched (or, with --skip-bad, is left out and reported).",
    )
    parser.add_argument("name", metavar="NAME", nargs="?", help="the speaker's name (unique in the store)")
    parser.add_argument(
        "clips", metavar="CLIP", nargs="*", help="an audio file, or a folder: every audio file below it"
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE.csv",
        help="enroll every speaker of a CSV (columns speaker, path) instead of NAME CLIP...; "
        "speakers already enrolled are skipped, so an interrupted run can simply be run again",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="with --manifest: read and embed clips on Ray (this machine, or the cluster at ADDRESS)",
    )
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="Ray workers, one model each (default 2)")
    parser.add_argument(
        "--rttm",
        type=Path,
        metavar="REF.rttm",
        help="enroll from NAME's turns in one RECORDING, as this RTTM file labels them (with --label)",
    )
    parser.add_argument("--label", metavar="L", help="with --rttm: the label of the speaker's turns")
    parser.add_argument(
        "--span",
        action="append",
        default=[],
        metavar="START-END",
        help="enroll from this stretch of one RECORDING, in seconds (repeatable)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--replace", action="store_true", help="re-enroll NAME from scratch, dropping its old clips")
    mode.add_argument("--append", action="store_true", help="add the clips to NAME's existing voiceprint")
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata to store with the speaker (repeatable)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse (instead of warning) when the voice matches another enrolled speaker",
    )
    parser.add_argument(
        "--allow-similar",
        action="store_true",
        help="enroll a voice that sounds like an enrolled one (a second name, a reversed or re-timed copy); "
        "refused without it, and logged either way",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out clips that fail a check (reported with the reason) instead of refusing all",
    )
    parser.add_argument(
        "--min-speech",
        type=finite,
        default=MIN_TOTAL_SPEECH,
        metavar="SECONDS",
        help=f"net speech needed over all clips (default {MIN_TOTAL_SPEECH:g})",
    )
    parser.add_argument(
        "--min-clip-speech",
        type=finite,
        default=MIN_CLIP_SPEECH,
        metavar="SECONDS",
        help=f"net speech needed in each clip (default {MIN_CLIP_SPEECH:g})",
    )
    parser.set_defaults(handler=enroll)
    return parser


def enroll(args: argparse.Namespace) -> int:
    if args.manifest is not None:
        return enroll_many(args)
    if args.ray is not None:
        raise UsageError("--ray goes with --manifest")
    if not args.name or not args.clips:
        raise UsageError("enroll-speaker: give NAME and at least one CLIP, or --manifest FILE.csv")
    if args.rttm is not None or args.span:
        return enroll_turns(args)
    with open_speakerid(args) as sid:
        result = sid.enroll(
            args.name,
            args.clips,
            replace=args.replace,
            append=args.append,
            metadata=parse_meta(args.meta),
            strict=args.strict,
            skip_bad=args.skip_bad,
            min_speech=args.min_speech,
            min_clip_speech=args.min_clip_speech,
            allow_similar=args.allow_similar,
        )
    return report(args, result)


def enroll_turns(args: argparse.Namespace) -> int:
    """``enroll-speaker NAME RECORDING --rttm REF --label L`` or ``--span START-END``..."""
    if len(args.clips) != 1:
        raise UsageError("--rttm and --span take exactly one RECORDING")
    if (args.rttm is None) == (not args.span) or (args.rttm is not None and not args.label):
        raise UsageError("give --rttm REF.rttm --label L, or --span START-END (not both)")
    from speakerid.flows.turns import span

    with open_speakerid(args) as sid:
        result = sid.enroll_turns(
            args.name,
            args.clips[0],
            rttm=args.rttm,
            label=args.label,
            spans=[span(s) for s in args.span] or None,
            replace=args.replace,
            append=args.append,
            metadata=parse_meta(args.meta),
            strict=args.strict,
            skip_bad=True,  # turns are often too short alone; the ones that fail a check are reported
            min_speech=args.min_speech,
            min_clip_speech=args.min_clip_speech,
            allow_similar=args.allow_similar,
        )
    return report(args, result)


def report(args: argparse.Namespace, result) -> int:
    for message in result.warnings:
        warn(message)
    for skipped in result.skipped:
        warn(f"left out {skipped.clip}: {skipped.reason}")
    emit(
        args,
        result.to_dict(),
        f"enrolled {result.speaker}: {plural(result.clips, 'clip')}, {result.speech_seconds:.1f} s of speech "
        f"({plural(result.total_clips, 'clip')} in total; model {result.model})\n{quality_line(result.quality)}",
    )
    return 0


def quality_line(quality: dict) -> str:
    """The enrollment's feedback in one line.

    >>> quality_line({"speech_seconds": 41.2, "agreement": 0.81, "expected_accept": 0.95, "advice": ["good"]})
    'quality: 41.2 s of speech, clips agree 0.81, new recordings expected to be named 95 % of the time; good'
    """
    parts = [f"{quality['speech_seconds']:g} s of speech"]
    if quality.get("agreement") is not None:
        parts.append(f"clips agree {quality['agreement']:.2f}")
    if quality.get("expected_accept") is not None:
        parts.append(
            f"new recordings expected to be named {quality['expected_accept']:.0%} of the time".replace("%", " %")
        )
    return "quality: " + ", ".join(parts) + "; " + "; ".join(quality.get("advice", []))


def enroll_many(args: argparse.Namespace) -> int:
    from speakerid.base import validate
    from speakerid.flows.enrollment import Limits

    from .bulk import enroll_manifest

    if args.name or args.clips or args.append or args.replace:
        raise UsageError("--manifest enrolls new speakers from the file: no NAME, CLIP, --append or --replace")
    limits = Limits(
        min_speech=validate.seconds("--min-speech", args.min_speech),
        min_clip_speech=validate.seconds("--min-clip-speech", args.min_clip_speech),
    )
    workers = validate.count("--workers", args.workers, low=1, high=1024)
    with open_speakerid(args) as sid:
        report = enroll_manifest(
            sid, args.manifest, limits=limits, skip_bad=args.skip_bad, ray=args.ray, workers=workers
        )
    for refused in report.refused:
        warn(f"refused {refused['speaker']}: {refused['reason']}")
    emit(
        args,
        report.to_dict(),
        f"enrolled {len(report.enrolled)} speakers, refused {len(report.refused)}, "
        f"{len(report.already)} already enrolled",
    )
    return 3 if report.refused else 0


def main(argv: list[str] | None = None) -> int:
    return main_of(build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
