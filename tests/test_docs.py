"""The README lists every command, the README and docs/ document every option a user can type,
every command line they show parses, and their Python blocks run as written (the HTTP client
lines run against the real server: tests/test_service.py)."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil

import numpy as np
import pytest
import soundfile as sf

from enroll.cli import build_parser as enroll_parser
from speakerid.cli import build_parser as speakerid_parser

from conftest import GUIDES, ROOT, clips_of, needs_data, needs_model
from conftest import README as README_FILE

README = README_FILE.read_text()
DOCS = "\n".join([README, (ROOT / "SECURITY.md").read_text(), *(g.read_text() for g in GUIDES)])


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
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", DOCS), f"{command} {flag} is not documented"


def test_the_readme_is_read_in_five_minutes():
    assert len(README.encode()) <= 16 * 1024, len(README.encode())
    for guide in GUIDES:  # every guide is linked from the README
        assert f"docs/{guide.name}" in README, guide.name


def shown_command_lines() -> list[tuple[str, str]]:
    """``(file, line)``: every ``speakerid ...`` / ``enroll-speaker ...`` line of a bash block in the
    README, SECURITY.md and docs/, each command of a ``&&`` chain on its own, comments dropped."""
    found = []
    for path in [README_FILE, ROOT / "SECURITY.md", *GUIDES]:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|\||;", line.split(" #")[0]):
                    part = part.strip().rstrip("&").strip()
                    if re.match(r"(speakerid|enroll-speaker) ", part) and "$(" not in part:
                        found.append((path.name, part))
    return found


@pytest.mark.parametrize("where,line", shown_command_lines())
def test_every_command_line_shown_parses(where, line):
    """What a user copies from the documentation is a command line the programs accept."""
    words = shlex.split(line)
    parser = enroll_parser() if words[0] == "enroll-speaker" else speakerid_parser()
    try:
        parser.parse_args(words[1:])
    except SystemExit as exc:  # argparse's own exit on --help
        raise AssertionError(f"{where}: {line}") from exc
    except Exception as exc:  # our parsers raise UsageError for a malformed line
        raise AssertionError(f"{where}: {line}: {exc}") from exc


def test_the_stated_defaults_are_the_codes():
    from speakerid.apps.access import DEFAULT_LOCKOUT_ATTEMPTS, DEFAULT_LOCKOUT_SECONDS
    from speakerid.service.config import ServiceConfig

    defaults = ServiceConfig()
    assert (defaults.max_upload_mb, defaults.max_seconds, defaults.rate_limit, defaults.rate_burst) == (20, 120, 10, 20)
    assert (DEFAULT_LOCKOUT_ATTEMPTS, DEFAULT_LOCKOUT_SECONDS) == (5, 300)
    for claim in (
        "Uploads over 20 MB and clips over 120 s",
        "more than 10\nrequests a second",
        "(bursts of 20)",
        "After 5 denials",
    ):
        assert " ".join(claim.split()) in " ".join(DOCS.split()), claim


@needs_model
@needs_data
def test_the_readmes_python_api_block_runs_as_written(tmp_path, monkeypatch):
    """The README's first Python block, executed with its placeholder files made real: alice's
    folder, an interview folder holding one clip without speech (left out, said why), the door
    microphone and a phone call (both alice)."""
    block = re.search(r"```python\n(from speakerid import SpeakerID\n.*?)```", README, flags=re.S).group(1)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice").mkdir()
    for clip in clips_of("id90001", 1):
        shutil.copy(clip, tmp_path / "alice" / clip.name)
    (tmp_path / "interview").mkdir()
    for clip in clips_of("id90002", 1):
        shutil.copy(clip, tmp_path / "interview" / clip.name)
    sf.write(tmp_path / "interview" / "silence.wav", np.zeros(32000, dtype=np.float32), 16000)
    shutil.copy(clips_of("id90001", 3)[0], tmp_path / "door-mic.wav")
    shutil.copy(clips_of("id90001", 3)[1], tmp_path / "phone-call.wav")
    scope: dict = {}
    exec(block, scope)
    sid = scope["sid"]
    assert scope["result"].speaker == "alice"
    assert [s.name for s in sid.speakers()] == ["bob"]  # alice erased by the block's last line
    assert (tmp_path / "voices" / "speakerid.db").is_file()
    sid.close()


@needs_model
@needs_data
def test_the_live_audio_guides_block_runs_as_written(tmp_path, capsys):
    """docs/streaming.md's live-audio block with ``microphone()`` made real: a clip of alice's in
    0.1 s chunks of int16 samples; the door it names exists."""
    from speakerid import SpeakerID
    from speakerid.apps.access import AccessControl

    block = re.search(
        r"```python\n(stream = sid.stream\(.*?)```", (ROOT / "docs" / "streaming.md").read_text(), flags=re.S
    ).group(1)
    samples, rate = sf.read(clips_of("id90001", 3)[0], dtype="int16")
    with SpeakerID.open(tmp_path / "home") as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
        AccessControl(sid).grant("alice", "front-door")
        microphone = lambda: (samples[i : i + rate // 10] for i in range(0, len(samples), rate // 10))  # noqa: E731
        exec(block, {"sid": sid, "microphone": microphone, "AccessControl": AccessControl})
    printed = capsys.readouterr().out.splitlines()
    assert any("'speaker': 'alice'" in line for line in printed[:-1]), printed
    assert "alice" in printed[-1] and "final=True" in printed[-1], printed[-1]


def test_every_promise_of_the_threat_model_names_a_test_that_exists():
    security = (ROOT / "SECURITY.md").read_text()
    named = set(re.findall(r"`(test_\w+)`", security))
    defined = {
        m for path in (ROOT / "tests").glob("test_*.py") for m in re.findall(r"^def (test_\w+)", path.read_text(), re.M)
    }
    assert len(named) >= 15 and named <= defined, sorted(named - defined)
