"""Bad input through the command line: one line, named input and reason, non-zero exit, store unchanged."""

from __future__ import annotations

import hashlib

import soundfile as sf

from speakerid import SpeakerID
from store import DB_NAME, INDEX_NAME

from bad_audio import make_bad_inputs
from conftest import clip_path, iden_split, needs_data, run_cli

pytestmark = [needs_data]


def digest(home):
    return {n: hashlib.sha256((home / n).read_bytes()).hexdigest() for n in (DB_NAME, INDEX_NAME)}


def test_every_bad_input_fails_cleanly_through_the_cli(tmp_path, cli_env):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", [clip_path(r) for s, r in iden_split() if s == 1 and r.startswith("id90001/")])
    cli_env["SPEAKERID_HOME"] = str(home)
    speech, _ = sf.read(clip_path(iden_split()[0][1]), dtype="float32")
    cases = make_bad_inputs(tmp_path / "bad", speech)
    assert len(cases) >= 18
    before = digest(home)
    for path, reason in cases:
        for args in (["identify", str(path)], ["verify", "alice", str(path)]):
            done = run_cli(args, cli_env)
            assert done.returncode == 1, (args, done.stdout)
            assert "Traceback" not in done.stderr
            line = done.stderr.strip()
            assert "\n" not in line and line.startswith(f"error: {path}: ") and reason in line, line
        done = run_cli([ "bob", str(path)], cli_env, module="enroll.cli")
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and str(path) in done.stderr, done.stderr
    assert digest(home) == before
