"""The README documents every command and every option a user can type."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from enroll.cli import build_parser as enroll_parser
from speakerid.cli import build_parser as speakerid_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _walk(parser: argparse.ArgumentParser, prefix: str):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{prefix} {name}")


COMMANDS = list(_walk(speakerid_parser(), "speakerid")) + [("enroll-speaker", enroll_parser())]


@pytest.mark.parametrize("command,parser", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_option_is_in_the_readme_and_in_help(command, parser):
    if command != "speakerid" and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        assert f"`{command}" in README, f"{command} is not in the README's command table"
    help_text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            assert flag in help_text
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", README), f"{command} {flag} is not documented"


def test_the_readmes_stated_defaults_are_the_codes():
    from speakerid.access import DEFAULT_LOCKOUT_ATTEMPTS, DEFAULT_LOCKOUT_SECONDS
    from speakerid.service.config import ServiceConfig

    defaults = ServiceConfig()
    assert (defaults.max_upload_mb, defaults.max_seconds, defaults.rate_limit, defaults.rate_burst) == (20, 120, 10, 20)
    assert (DEFAULT_LOCKOUT_ATTEMPTS, DEFAULT_LOCKOUT_SECONDS) == (5, 300)
    for claim in ("Uploads over 20 MB and clips over 120 s", "more than 10\nrequests a second", "(bursts of 20)",
                  "After 5 denials"):
        assert " ".join(claim.split()) in " ".join(README.split()), claim
