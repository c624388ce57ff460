"""What every command line of the project shares: how commands are declared, the common options,
JSON output, and the one error path (``error: ...`` on stderr, also a JSON object with ``--json``).

A command is a function declared with its options right above it::

    @command("speakers", help="list enrolled speakers")
    def speakers(args): ...
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from speakerid.base.errors import SpeakerIDError, UsageError, one_line
from speakerid.base.text import printable

Handler = Callable[[argparse.Namespace], "int | None"]
UNKNOWN = 3  # exit status of a decision that names no one: identify "unknown", verify rejected, access denied


def plural(count: int, noun: str) -> str:
    """``"1 clip"``, ``"7 clips"``.

    >>> plural(1, "clip"), plural(7, "clip"), plural(0, "speaker")
    ('1 clip', '7 clips', '0 speakers')
    """
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


@dataclass
class Command:
    path: tuple[str, ...]
    handler: Handler
    help: str
    arguments: tuple[tuple[tuple, dict], ...]
    description: str | None = None
    json_flag: bool = True
    device_flag: bool = True  # False for commands whose --device means something else (a sound card)


@dataclass
class Registry:
    commands: list[Command] = field(default_factory=list)
    groups: dict[tuple[str, ...], str] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> tuple[tuple, dict]:
    """One argument of a command, as ``argparse.add_argument`` takes it."""
    return flags, options


def ray_args(what: str) -> list[tuple[tuple, dict]]:
    """``--ray [ADDRESS]`` and ``--ray-workers N``, for a command that can ``what`` on Ray."""
    return [
        arg(
            "--ray",
            nargs="?",
            const="",
            metavar="ADDRESS",
            help=f"{what} on Ray: this machine, or the cluster at ADDRESS (e.g. ray://head:10001)",
        ),
        arg("--ray-workers", type=int, default=2, metavar="N", help="Ray workers, one model each (default 2)"),
    ]


COMMANDS = Registry()  # the ``speakerid`` program's commands, filled by the modules of this package


def group(path: str, help: str) -> None:
    """Name a group of commands (``keys``, ``access``) and say what it is for."""
    COMMANDS.groups[tuple(path.split())] = help


def command(
    path: str,
    *arguments: tuple[tuple, dict],
    help: str,
    description: str | None = None,
    json_flag: bool = True,
    device_flag: bool = True,
) -> Callable[[Handler], Handler]:
    """Declare ``handler`` as the command ``path`` (e.g. ``"access grant"``) with its arguments."""

    def register(handler: Handler) -> Handler:
        COMMANDS.commands.append(
            Command(tuple(path.split()), handler, help, arguments, description, json_flag, device_flag)
        )
        return handler

    return register


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is a :class:`UsageError` (one line, JSON with ``--json``), not a
    usage dump and exit 2 from inside the parser."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def common_options(json_flag: bool = True, device_flag: bool = True) -> argparse.ArgumentParser:
    """Options every subcommand accepts, before or after its own arguments.

    ``json_flag=False`` for commands whose ``--json`` takes a file name instead; ``device_flag=False``
    for commands whose ``--device`` is not the torch device.
    """
    parent = ArgumentParser(add_help=False)
    parent.add_argument(
        "--home",
        type=Path,
        default=argparse.SUPPRESS,
        help="store folder (default: $SPEAKERID_HOME, else ~/.local/share/speakerid)",
    )
    parent.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="postgresql://USER@HOST:PORT/DB or a folder (default: $SPEAKERID_STORE, else --home)",
    )
    parent.add_argument(
        "--model",
        default=argparse.SUPPRESS,
        help="hub id or local SpeechBrain model folder (default: $SPEAKERID_MODEL, else "
        "speechbrain/spkrec-ecapa-voxceleb)",
    )
    if device_flag:
        parent.add_argument("--device", default=argparse.SUPPRESS, help="torch device, e.g. cpu or cuda (default: cpu)")
    if json_flag:
        parent.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print one JSON object on stdout instead of text",
        )
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log progress and show tracebacks of unexpected errors",
    )
    return parent


def build(prog: str, description: str, reg: Registry) -> ArgumentParser:
    """The parser for every command in ``reg``, nested by path (``keys create``, ``access grant``)."""
    common = common_options()
    parser = ArgumentParser(prog=prog, description=description, parents=[common])
    subs: dict[tuple[str, ...], argparse._SubParsersAction] = {}

    def sub_of(path: tuple[str, ...]) -> argparse._SubParsersAction:
        if path not in subs:
            owner = (
                parser
                if not path
                else sub_of(path[:-1]).add_parser(path[-1], help=reg.groups.get(path, ""), parents=[common])
            )
            subs[path] = owner.add_subparsers(
                dest="command_" + "_".join(path) if path else "command",
                metavar="ACTION" if path else "COMMAND",
                required=True,
            )
        return subs[path]

    for cmd in reg.commands:
        parent = common if cmd.json_flag and cmd.device_flag else common_options(cmd.json_flag, cmd.device_flag)
        p = sub_of(cmd.path[:-1]).add_parser(
            cmd.path[-1], parents=[parent], help=cmd.help, description=cmd.description or cmd.help
        )
        for flags, options in cmd.arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(handler=cmd.handler)
    return parser


def option(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


def emit(args: argparse.Namespace, result: dict, text: str) -> None:
    """Print ``result`` as JSON with ``--json``, else the human-readable ``text``."""
    if option(args, "json"):
        print(json.dumps(result, allow_nan=False))  # NaN is not JSON; a bug, never a silent "NaN"
    else:
        print(text)


def main_of(parser_factory: Callable[[], argparse.ArgumentParser], argv: list[str] | None) -> int:
    """Parse and run a command line: the entry point of every console script."""
    argv = sys.argv[1:] if argv is None else argv
    _printable_names()
    try:
        args = parser_factory().parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc), as_json="--json" in argv, code=2)
    return run(args.handler, args)


def run(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command; turn expected failures into one ``error: ...`` line and a non-zero exit."""
    verbose = bool(option(args, "verbose"))
    _printable_names()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        return _fail("interrupted", as_json=bool(option(args, "json")), code=130)
    except SpeakerIDError as exc:
        return _fail(str(exc), as_json=bool(option(args, "json")))
    except Exception as exc:
        if verbose:
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {one_line(exc)} (run with --verbose for details)",
            as_json=bool(option(args, "json")),
        )


def _fail(message: str, *, as_json: bool, code: int = 1) -> int:
    message = printable(" ".join(message.split()), 2000)  # one line, whatever the message held
    if as_json:
        print(json.dumps({"error": message}))
    print(f"error: {message}", file=sys.stderr)
    return code


def _printable_names() -> None:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed as its own bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")


def open_speakerid(args: argparse.Namespace):
    """The :class:`SpeakerID` the common options describe."""
    from speakerid.api import SpeakerID

    device = option(args, "device")
    return SpeakerID.open(
        option(args, "home"),
        store=option(args, "store"),
        model=option(args, "model"),
        device=device if isinstance(device, str) else "cpu",
    )


def warn(message: str) -> None:
    print(f"warning: {printable(message, 2000)}", file=sys.stderr)


def finite(text: str) -> float:
    """An argparse type: a float that is not nan or inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def output_file(text: str) -> Path:
    """An argparse type: a file the command will write, checked before any work is done (a
    timeline or an evaluation can take minutes, and then fail on a typo in the output's folder).

    >>> output_file("/nonexistent-folder/out.rttm")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: cannot write /nonexistent-folder/out.rttm: no folder /nonexistent-folder
    >>> output_file("/")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: cannot write /: it is a folder
    """
    path = Path(text).expanduser()
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: it is a folder")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: no folder {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
    return path
