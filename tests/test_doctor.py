"""`speakerid doctor`: reports agreement, finds a damaged index, and repairs it."""

from __future__ import annotations

import json
import re

import numpy as np

from speakerid.voice.onnx_model import INT8_FLAGS, cpu_flags
from store import INDEX_NAME, NewEmbedding, open_store

from conftest import run_cli


def test_doctor_reports_finds_and_repairs(tmp_path, cli_env):
    home = tmp_path / "home"
    cli_env["SPEAKERID_HOME"] = str(home)
    rng = np.random.default_rng(0)
    with open_store(home, model="m", dimension=8) as s:
        for i in range(5):
            v = rng.standard_normal((2, 8)).astype(np.float32)
            s.voiceprints.add_speaker(f"s{i}", [NewEmbedding(x / np.linalg.norm(x)) for x in v], model="m")
    ok = run_cli(["doctor", "--json"], cli_env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["consistent"] is True
    assert "no int8 activations measured" in json.loads(ok.stdout)["engine"]  # model "m"
    fresh = {**cli_env, "SPEAKERID_HOME": str(tmp_path / "fresh")}  # no model yet: the default one's path
    text = run_cli(["doctor"], fresh).stdout
    int8 = bool(cpu_flags() & set(INT8_FLAGS))  # which path embeddings take on this CPU, said as such
    assert re.search(
        r"engine: +ONNX Runtime " + ("int8 \\(this CPU has " if int8 else "fp32 \\(this CPU has none"), text
    ), text
    fresh["SPEAKERID_PRECISION"] = "fp32"
    assert (
        json.loads(run_cli(["doctor", "--json"], fresh).stdout)["engine"]
        == "ONNX Runtime fp32 (SPEAKERID_PRECISION=fp32)"
    )
    (home / INDEX_NAME).write_bytes(b"SPKIDX1\n" + b"\0" * 64)
    bad = run_cli(["doctor", "--json"], cli_env)
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and not report["consistent"] and report["problems"]
    fixed = run_cli(["doctor", "--repair", "--json"], cli_env)
    report = json.loads(fixed.stdout)
    assert fixed.returncode == 0 and report["consistent"] and report["repaired"]
    assert report["index"]["count"] == 10


def test_an_index_left_behind_by_a_killed_write_is_noted_not_failed(tmp_path, cli_env):
    """A process killed between its commit and saving the index leaves the index one generation
    behind: harmless (it catches up on next use), so doctor says so without failing."""
    home = tmp_path / "home"
    cli_env["SPEAKERID_HOME"] = str(home)
    rng = np.random.default_rng(1)
    with open_store(home, model="m", dimension=8) as s:
        s.voiceprints.add_speaker("a", [NewEmbedding(rng.standard_normal(8).astype(np.float32))], model="m")
        old = (home / INDEX_NAME).read_bytes()
        s.voiceprints.add_speaker("b", [NewEmbedding(rng.standard_normal(8).astype(np.float32))], model="m")
        s.voiceprints.remove_speaker("a")
    (home / INDEX_NAME).write_bytes(old)  # as if the last two writes never saved their index
    behind = run_cli(["doctor", "--json"], cli_env)
    report = json.loads(behind.stdout)
    assert behind.returncode == 0 and report["consistent"] and "catches up on next use" in report["notes"][0]
    fixed = json.loads(run_cli(["doctor", "--repair", "--json"], cli_env).stdout)
    assert fixed["consistent"] and fixed["repaired"] and fixed["notes"] == [] and fixed["index"]["count"] == 1
    (home / INDEX_NAME).write_bytes(old)
    with open_store(home) as s:  # the next user of the store brings it up to date by itself
        assert [h.speaker for h in s.voiceprints.search(rng.standard_normal(8).astype(np.float32), k=5)] == ["b"]
    assert json.loads(run_cli(["doctor", "--json"], cli_env).stdout)["notes"] == []
