"""Load: processes enrolling and identifying against one store at once. No errors, no lost
enrollments, no "database is locked" reaching anyone, and identification stays right; throughput
is printed.

CI runs 4 enrolling + 8 identifying processes for 20 s each; the full run is

    SPEAKERID_LOAD_SECONDS=60 python -m pytest tests/test_load.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from speakerid import SpeakerID

from conftest import clips_of, needs_data, run_cli
from workers import BASE, SCRIPT, Expected

pytestmark = [needs_data]

SECONDS = float(os.environ.get("SPEAKERID_LOAD_SECONDS", "20"))
ENROLLERS = int(os.environ.get("SPEAKERID_LOAD_ENROLLERS", "4"))
IDENTIFIERS = int(os.environ.get("SPEAKERID_LOAD_IDENTIFIERS", "8"))


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_enrolling_and_identifying_at_once(tmp_path, cli_env, model_dir):
    home = tmp_path / "home"
    cli_env["SPEAKERID_HOME"] = str(home)
    with SpeakerID.open(home) as sid:
        for speaker in BASE:
            sid.enroll(speaker, clips_of(speaker, 1))
    procs = []
    for i in range(ENROLLERS + IDENTIFIERS):
        role = "churn" if i < ENROLLERS else "identify"
        log = tmp_path / f"{role}{i}.jsonl"
        procs.append(
            (
                role,
                log,
                subprocess.Popen(
                    [sys.executable, str(SCRIPT), role, str(home), str(log), str(i), "--seconds", str(SECONDS)],
                    env={**cli_env, "OMP_NUM_THREADS": "1"},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    for _, _, proc in procs:
        _, err = proc.communicate(timeout=SECONDS + 600)
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err, err

    logs = {log: records(log) for _, log, _ in procs}
    errors = [r for rs in logs.values() for r in rs if r["event"] == "error"]
    assert not errors, errors[:5]
    start = max(r["t"] for rs in logs.values() for r in rs if r["event"] == "ready")
    end = min(r["t"] for rs in logs.values() for r in rs if r["event"] == "exit")
    assert end - start >= 0.5 * SECONDS, "the workers barely overlapped"

    answers = [r for (role, log, _) in procs if role == "identify" for r in logs[log] if r["event"] == "done"]
    wrong = [r for r in answers if r["answer"] != r["expected"]]
    assert answers and not wrong, wrong[:5]
    expected = Expected()
    for role, log, _ in procs:
        if role == "churn":
            expected.replay(log)
    intact = expected.check(home)
    doctor = run_cli(["doctor", "--json"], cli_env)
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["consistent"], doctor.stdout

    def rate(rs, kind=None):
        return sum(
            1 for r in rs if r["event"] == "done" and start <= r["t"] <= end and (kind is None or r["op"] in kind)
        )

    writes = [r for (role, log, _) in procs if role == "churn" for r in logs[log]]
    done = sum(r["event"] == "done" for r in writes)
    assert done >= ENROLLERS and sum(r["event"] == "refused" for r in writes) <= done, "the enrollers barely wrote"
    seconds = np.array([r["seconds"] for r in answers]) * 1000
    print(
        f"\n{ENROLLERS} enrolling + {IDENTIFIERS} identifying processes, {end - start:.0f} s all running: "
        f"{rate(answers) / (end - start):.1f} identifications/s (p50 {np.median(seconds):.0f} ms, "
        f"p95 {np.percentile(seconds, 95):.0f} ms, all {len(answers)} right), "
        f"{rate(writes, {'enroll', 'append', 'replace'}) / (end - start):.2f} enrollments/s, "
        f"{rate(writes, {'remove'})} removals, {rate(writes, {'import'})} bulk imports; "
        f"0 errors; {intact} reported speakers intact; doctor consistent"
    )
