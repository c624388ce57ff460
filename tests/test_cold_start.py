"""A new process answers without importing torch, SpeechBrain or silero-vad's Python package.

Why: a door controller runs ``speakerid access check`` once per event; importing torch alone cost
about 1-1.6 s of every call. How fast the start is, per CPU, is benchmarks/identify_speed.py's
job; this file checks what makes it fast stays true.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import clips_of, needs_data, run_cli

HEAVY = ("torch", "torchaudio", "speechbrain", "silero_vad", "scipy")

# Runs a command as its console script would, then reports which heavy packages got imported.
PROBE = """
import json, runpy, sys
sys.argv = ["speakerid"] + sys.argv[1:]
code = 0
try:
    runpy.run_module("speakerid.cli", run_name="__main__")
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def probe(args: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_data
def test_identify_and_access_check_start_without_torch(cli_env):
    alice, bob = clips_of("id90001", 1), clips_of("id90101", 1)
    assert run_cli(["alice", *map(str, alice[:3])], cli_env, module="enroll.cli").returncode == 0
    assert run_cli(["bob", *map(str, bob[:3])], cli_env, module="enroll.cli").returncode == 0
    assert run_cli(["access", "grant", "alice", "door"], cli_env).returncode == 0
    query = str(clips_of("id90001", 3)[0])

    identified = probe(["identify", query, "--json"], cli_env)
    assert identified == {"code": 0, "heavy": []}
    checked = probe(["access", "check", "door", query], cli_env)
    assert checked == {"code": 0, "heavy": []}  # exit 0: allowed
    denied = probe(["access", "check", "door", str(clips_of("id90101", 3)[0])], cli_env)
    assert denied == {"code": 3, "heavy": []}
