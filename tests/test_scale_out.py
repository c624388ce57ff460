"""Scale out (issue #17): one PostgreSQL database shared by several service instances, moving a
store between backends, and corpus-size work on Ray giving the single-process results bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from speakerid import SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.apps.keys import create_key
from store import NewEmbedding, NewTurn, StoreError, open_store

from conftest import DATA, clips_of, needs_data, needs_postgres, postgres_schema, run_cli, serving

pytestmark = [needs_data]


@pytest.fixture
def pg_url():
    with postgres_schema() as url:
        yield url


@needs_postgres
def test_two_service_instances_share_one_postgresql(pg_url, tmp_path):
    with SpeakerID.open(store=pg_url) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        AccessControl(sid).grant("alice", "door")
        AccessControl(sid).set_lockout(2, 60)
        key, record = create_key(sid.store, "admin")
    env = {"SPEAKERID_STORE": pg_url}
    auth = {"Authorization": f"Bearer {key}"}
    with (
        serving(tmp_path / "unused-a", "--store", pg_url, env=env) as (a, _),
        serving(tmp_path / "unused-b", "--store", pg_url, env=env) as (b, _),
    ):
        files = [("file", (c.name, c.read_bytes(), "audio/wav")) for c in clips_of("id90002", 1)]
        enrolled = httpx.post(a + "/v1/speakers/bob/enrollments", files=files, headers=auth, timeout=300)
        assert enrolled.status_code == 201, enrolled.text
        committed = time.perf_counter()
        answer = httpx.post(
            b + "/v1/identify", content=clips_of("id90002", 3)[0].read_bytes(), headers=auth, timeout=120
        ).json()
        seen = time.perf_counter() - committed
        assert answer["speaker"] == "bob", answer  # the very next question on the other instance
        assert seen < 5, seen
        stranger = clips_of("id90004", 3)[0].read_bytes()
        for base in (a, b):  # denials on either instance count towards one lockout
            r = httpx.post(
                base + "/v1/access/check",
                params={"resource": "door", "claim": "alice"},
                content=stranger,
                headers=auth,
                timeout=120,
            ).json()
            assert r["allow"] is False and r["score"] is not None
        locked = httpx.post(
            a + "/v1/access/check",
            params={"resource": "door", "claim": "alice"},
            content=clips_of("id90001", 3)[0].read_bytes(),
            headers=auth,
            timeout=120,
        ).json()
        assert locked["reason"].startswith("locked out until")
        audit = httpx.get(b + "/v1/audit", headers=auth).json()["decisions"]
        assert len(audit) == 3 and {d["key_id"] for d in audit} == {record.id}
        assert httpx.delete(b + "/v1/speakers/bob", headers=auth).status_code == 200
        gone = httpx.post(
            a + "/v1/identify", content=clips_of("id90002", 3)[0].read_bytes(), headers=auth, timeout=120
        ).json()
        assert gone["speaker"] is None and "bob" not in [c["speaker"] for c in gone["candidates"]]


@needs_postgres
def test_store_copy_both_ways_with_checks(pg_url, tmp_path, cli_env):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
        AccessControl(sid).grant("@staff", "lab")
        AccessControl(sid).add_to_group("staff", "bob")
        AccessControl(sid).check("lab", clips_of("id90002", 3)[0])
        create_key(sid.store, "client")
        _, before, _ = sid.store.voiceprints.vectors()
        rng = np.random.default_rng(0)
        turns = [NewTurn(0, 2, rng.standard_normal(192).astype(np.float32), speaker="alice")]
        turns += [NewTurn(2, 5, rng.standard_normal(192).astype(np.float32), voice="new")]
        sid.store.archive.add_recording("/r/one.wav", "ab" * 32, 5.0, turns)
        kept = sid.store.archive.turns()
    there = run_cli(["store", "copy", str(home), pg_url, "--json"], cli_env)
    assert there.returncode == 0, there.stderr
    report = json.loads(there.stdout)
    assert report["checked"] and report["rows"]["embeddings"] == len(before) and report["rows"]["audit"] == 1
    back = tmp_path / "back"
    again = json.loads(run_cli(["store", "copy", pg_url, str(back), "--json"], cli_env).stdout)
    assert again["sha256"] == report["sha256"]
    for location in (pg_url, str(back)):
        with SpeakerID.open(store=location) as sid:
            assert sid.identify(clips_of("id90001", 3)[0]).speaker == "alice"
            assert AccessControl(sid).check("lab", clips_of("id90002", 3)[0]).allow
            np.testing.assert_array_equal(sid.store.voiceprints.vectors()[1], before)
            assert sid.store.archive.turns() == kept
            # unknown-N numbers go on where the source left them
            made = sid.store.archive.add_recording("/r/two.wav", "cd" * 32, 3.0, [turns[1]])
            assert made == {"new": "unknown-2"}
    refused = run_cli(["store", "copy", str(home), pg_url], cli_env)
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    doctor = run_cli(["doctor", "--store", pg_url, "--json"], cli_env)
    assert doctor.returncode == 0 and json.loads(doctor.stdout)["backend"] == "postgresql"
    migrate = json.loads(run_cli(["db", "migrate", "--store", pg_url, "--json"], cli_env).stdout)
    assert migrate["schema_version"] == 5 and migrate["applied"] == []


@needs_postgres
def test_erasure_on_postgresql_leaves_no_vector_in_the_table_files(pg_url):
    import psycopg

    rng = np.random.default_rng(0)
    secret = rng.standard_normal((3, 16)).astype(np.float32)
    with open_store(pg_url) as store:
        store.voiceprints.add_speaker(
            "keep", [NewEmbedding(v) for v in rng.standard_normal((2, 16)).astype(np.float32)], model="m"
        )
        store.voiceprints.add_speaker("erase-me", [NewEmbedding(v) for v in secret], model="m")
        with psycopg.connect(pg_url) as conn:
            files = [
                conn.execute(
                    "SELECT current_setting('data_directory') || '/' || pg_relation_filepath(%s)", [t]
                ).fetchone()[0]
                for t in ("embeddings", "speakers")
            ]
        conn = psycopg.connect(pg_url, autocommit=True)
        conn.execute("CHECKPOINT")  # the rows reach the data files
        assert any(secret[0].tobytes() in Path(f).read_bytes() for f in files)  # the test can see them
        store.voiceprints.remove_speaker("erase-me")
        with psycopg.connect(pg_url) as c:
            files = [
                c.execute(
                    "SELECT current_setting('data_directory') || '/' || pg_relation_filepath(%s)", [t]
                ).fetchone()[0]
                for t in ("embeddings", "speakers")
            ]
        conn.execute("CHECKPOINT")
        for f in files:
            data = Path(f).read_bytes()
            assert all(v.tobytes()[:32] not in data for v in secret) and b"erase-me" not in data


def test_an_unreachable_database_is_one_line(cli_env):
    done = run_cli(["speakers", "--store", "postgresql://nobody@127.0.0.1:1/none"], cli_env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "cannot connect to PostgreSQL" in done.stderr
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


# -- corpus-size work on Ray ------------------------------------------------------------------------
def manifest(tmp_path: Path, speakers: list[str]) -> Path:
    path = tmp_path / "voices.csv"
    rows = ["speaker,path"] + [f"{s},{c}" for s in speakers for c in clips_of(s, 1)]
    rows.append("ghost,missing.wav")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_bulk_enrollment_on_ray_is_the_single_process_path_bit_for_bit(tmp_path, cli_env):
    people = ["id90001", "id90002", "id90101", "id90102"]
    sheet = manifest(tmp_path, people)
    homes = {}
    for label, extra in (("local", []), ("ray", ["--ray", "--workers", "2"])):
        homes[label] = tmp_path / label
        cli_env["SPEAKERID_HOME"] = str(homes[label])
        done = run_cli(["--manifest", str(sheet), "--json", *extra], cli_env, module="enroll.cli", timeout=900)
        assert done.returncode == 3, done.stderr  # one speaker refused: the exit says so
        report = json.loads(done.stdout)
        assert [e["speaker"] for e in report["enrolled"]] == people
        assert report["refused"][0]["speaker"] == "ghost" and "file not found" in report["refused"][0]["reason"]
    with open_store(homes["local"]) as a, open_store(homes["ray"]) as b:
        for person in people:
            assert a.voiceprints.vectors(person)[1].tobytes() == b.voiceprints.vectors(person)[1].tobytes()
            assert a.voiceprints.clip_digests(person) == b.voiceprints.clip_digests(person)
    again = json.loads(run_cli(["--manifest", str(sheet), "--json"], cli_env, module="enroll.cli").stdout)
    assert again["already_enrolled"] == people and again["enrolled"] == []  # a rerun resumes: nothing twice


def test_an_interrupted_bulk_enrollment_resumes(tmp_path, cli_env):
    people = ["id90003", "id90004", "id90005", "id90006", "id90007", "id90008"]
    sheet = manifest(tmp_path, people)
    cli_env["SPEAKERID_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "enroll.cli", "--manifest", str(sheet), "--json"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once some, not all, speakers are in
        time.sleep(0.5)
        if (tmp_path / "home" / "speakerid.db").exists():
            with open_store(tmp_path / "home") as store:
                if 1 <= len(store.voiceprints.speakers()) < len(people):
                    break
    proc.kill()
    proc.wait()
    with open_store(tmp_path / "home") as store:
        first = {s.name: s.clips for s in store.voiceprints.speakers()}
    assert 0 < len(first) < len(people) and all(n == len(clips_of(p, 1)) for p, n in first.items())
    done = json.loads(run_cli(["--manifest", str(sheet), "--json"], cli_env, module="enroll.cli").stdout)
    assert sorted(done["already_enrolled"]) == sorted(first)
    assert sorted(e["speaker"] for e in done["enrolled"]) == sorted(set(people) - set(first))


def test_evaluation_on_ray_equals_the_single_process_path(tmp_path, cli_env):
    outs = {}
    for label, extra in (("local", []), ("ray", ["--ray", "--ray-workers", "2"])):
        outs[label] = tmp_path / f"{label}.json"
        done = run_cli(
            ["eval", "voxceleb", "--root", str(DATA), "--json", str(outs[label]), *extra], cli_env, timeout=900
        )
        assert done.returncode == 0, done.stderr
    local, ray = (json.loads(outs[k].read_text()) for k in ("local", "ray"))
    assert local["identification"] == ray["identification"] and local["verification"] == ray["verification"]
    assert ray["embedded_clips"] == 146


def test_timelines_on_ray_equal_the_single_process_path(tmp_path, cli_env):
    """`speakerid timeline --ray` reads the recordings on actors and labels them in the driver, in
    the order given: the same turns, and the same unknown-N in the archive, as one process."""
    conversation = DATA.parent / "conversations" / "sample.wav"
    stranger = clips_of("id90103", 3)[0]
    outs = {}
    for label, extra in (("local", []), ("ray", ["--ray", "--ray-workers", "1"])):
        env = {**cli_env, "SPEAKERID_HOME": str(tmp_path / label)}
        with SpeakerID.open(tmp_path / label) as sid:
            for person in ("id90001", "id90002"):
                sid.enroll(person, clips_of(person, 1))
        done = run_cli(["--json", "timeline", str(conversation), str(stranger), "--keep", *extra], env, timeout=600)
        assert done.returncode == 0, done.stderr
        outs[label] = json.loads(done.stdout)
        with SpeakerID.open(tmp_path / label) as sid:
            outs[label + " voices"] = [(v.label, round(v.seconds, 2), v.recordings) for v in sid.archive.voices()]
    assert outs["local"] == outs["ray"] and outs["local voices"] == outs["ray voices"]
    assert outs["local voices"], "the stranger is kept as an unknown voice"
