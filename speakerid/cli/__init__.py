"""The ``speakerid`` command. Each subcommand is a thin layer over the Python API; the modules of
this package declare them (:func:`speakerid.cli.common.command`), this one assembles the parser."""

from __future__ import annotations

import argparse

from speakerid.cli import access, admin, evaluation, timelines, voices  # noqa: F401,I001 (each registers its commands, in this order)
from speakerid.cli.common import COMMANDS, build, main_of


def build_parser() -> argparse.ArgumentParser:
    return build("speakerid", "Speaker identification and enrollment.", COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return main_of(build_parser, argv)
