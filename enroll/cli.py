"""The ``enroll-speaker`` command."""

from __future__ import annotations

import argparse
import sys

from speakerid.cli_common import UsageError, common_options, emit, open_speakerid, run, warn

from .pipeline import MIN_CLIP_SPEECH, MIN_TOTAL_SPEECH


def parse_meta(pairs: list[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta takes key=value, got {pair!r}")
        meta[key] = value
    return meta


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enroll-speaker", parents=[common_options()],
        description="Enroll a speaker from one or more clips (files or folders of audio). All clips are decoded, "
                    "checked and embedded before anything is written: one bad clip fails the command, names the "
                    "file, and leaves the store untouched.",
    )
    parser.add_argument("name", metavar="NAME", help="the speaker's name (unique in the store)")
    parser.add_argument("clips", metavar="CLIP", nargs="+", help="an audio file, or a folder: every audio file below it")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--replace", action="store_true", help="re-enroll NAME from scratch, dropping its old clips")
    mode.add_argument("--append", action="store_true", help="add the clips to NAME's existing voiceprint")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="metadata to store with the speaker (repeatable)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse (instead of warning) when the voice matches another enrolled speaker")
    parser.add_argument("--min-speech", type=float, default=MIN_TOTAL_SPEECH, metavar="SECONDS",
                        help=f"net speech needed over all clips (default {MIN_TOTAL_SPEECH:g})")
    parser.add_argument("--min-clip-speech", type=float, default=MIN_CLIP_SPEECH, metavar="SECONDS",
                        help=f"net speech needed in each clip (default {MIN_CLIP_SPEECH:g})")
    return parser


def cmd_enroll(args: argparse.Namespace) -> int:
    with open_speakerid(args) as sid:
        result = sid.enroll(args.name, args.clips, replace=args.replace, append=args.append,
                            metadata=parse_meta(args.meta), strict=args.strict, min_speech=args.min_speech,
                            min_clip_speech=args.min_clip_speech)
    for message in result.warnings:
        warn(message)
    emit(args, result.to_dict(),
         f"enrolled {result.speaker}: {result.clips} clips, {result.speech_seconds:.1f} s of speech "
         f"({result.total_clips} clips in total; model {result.model})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(cmd_enroll, args)


if __name__ == "__main__":
    sys.exit(main())
