"""What every command line of the project shares: common options, JSON output, one-line errors."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import SpeakerIDError


class UsageError(SpeakerIDError):
    """A command was called with arguments that do not make sense together."""


def common_options(json_flag: bool = True) -> argparse.ArgumentParser:
    """Options every subcommand accepts, before or after its own arguments.

    ``json_flag=False`` for commands whose ``--json`` takes a file name instead.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--home", type=Path, default=argparse.SUPPRESS,
                        help="store folder (default: $SPEAKERID_HOME, else ~/.local/share/speakerid)")
    parent.add_argument("--model", default=argparse.SUPPRESS,
                        help="hub id or local SpeechBrain model folder (default: $SPEAKERID_MODEL, else speechbrain/spkrec-ecapa-voxceleb)")
    parent.add_argument("--device", default=argparse.SUPPRESS, help="torch device, e.g. cpu or cuda (default: cpu)")
    if json_flag:
        parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print one JSON object on stdout instead of text")
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log progress and show tracebacks of unexpected errors")
    return parent


def option(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def emit(args: argparse.Namespace, result: dict, text: str) -> None:
    """Print ``result`` as JSON with ``--json``, else the human-readable ``text``."""
    if option(args, "json"):
        print(json.dumps(result))
    else:
        print(text)


def run(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; turn expected failures into ``error: ...`` on stderr and a non-zero exit."""
    verbose = bool(option(args, "verbose"))
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed as its own bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _expected(exc):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if verbose:
            raise
        print(f"error: unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''} "
              "(run with --verbose for details)", file=sys.stderr)
        return 1


def _expected(exc: Exception) -> bool:
    if isinstance(exc, SpeakerIDError):
        return True
    try:
        from store import StoreError
    except ImportError:
        return False
    return isinstance(exc, StoreError)


def open_speakerid(args: argparse.Namespace):
    """The :class:`SpeakerID` the common options describe."""
    from .api import SpeakerID

    return SpeakerID.open(option(args, "home"), model=option(args, "model"), device=option(args, "device") or "cpu")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
