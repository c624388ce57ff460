"""The store, on both backends: records and the derived index agree, writes are atomic across
processes and kills, deletion erases, old stores migrate."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from store import (
    INDEX_NAME,
    Counts,
    InvalidNameError,
    InvalidValueError,
    ModelMismatchError,
    NewEmbedding,
    SpeakerExistsError,
    SpeakerNotFoundError,
    Store,
    VectorIndex,
    open_store,
)

ROOT = Path(__file__).resolve().parents[1]
DIM = 16


def unit(rng, n=1, dim=DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


RECORDINGS = itertools.count()


def embs(vectors) -> list[NewEmbedding]:
    """One new recording per vector (enrollment's clip digests are unique per recording)."""
    return [NewEmbedding(v, clip_sha256=f"{next(RECORDINGS):064x}", speech_seconds=2.5) for v in vectors]


@pytest.fixture
def store(store_url):
    s = open_store(store_url, model="m", dimension=DIM)
    yield s
    s.close()


def test_enroll_append_replace_and_remove(store):
    rng = np.random.default_rng(0)
    alice = store.voiceprints.add_speaker("alice", embs(unit(rng, 2)), model="m", metadata={"team": "a"})
    assert (alice.clips, alice.speech_seconds, alice.metadata) == (2, 5.0, {"team": "a"})
    with pytest.raises(SpeakerExistsError, match="--append .* --replace"):
        store.voiceprints.add_speaker("alice", embs(unit(rng)), model="m")
    assert store.voiceprints.add_speaker("alice", embs(unit(rng)), model="m", mode="append").clips == 3
    fresh = unit(rng)
    replaced = store.voiceprints.add_speaker("alice", embs(fresh), model="m", mode="replace", metadata={"x": "1"})
    assert replaced.clips == 1 and replaced.metadata == {"x": "1"}
    assert [h.speaker for h in store.voiceprints.search(fresh[0], k=1)] == ["alice"]
    store.voiceprints.remove_speaker("alice")
    assert "alice" not in store.voiceprints and store.voiceprints.search(fresh[0]) == []
    with pytest.raises(SpeakerNotFoundError):
        store.voiceprints.remove_speaker("alice")
    assert [e.kind for e in store.audit.events()] == ["enroll", "enroll", "replace", "remove"]


def test_failed_write_leaves_store_unchanged(store):
    rng = np.random.default_rng(1)
    store.voiceprints.add_speaker("bob", embs(unit(rng)), model="m")
    before = (store.voiceprints.generation, store.voiceprints.speakers())
    bad = unit(rng, 2)
    bad[1, 0] = np.nan
    with pytest.raises(InvalidValueError, match="NaN"):
        store.voiceprints.add_speaker("carol", embs(bad), model="m")
    with pytest.raises(ModelMismatchError):
        store.voiceprints.add_speaker("carol", embs(unit(rng, 1, DIM + 1)), model="m")
    assert (store.voiceprints.generation, store.voiceprints.speakers()) == before


def test_vectors_of_some_speakers_all_or_one_and_the_counts(store):
    """What profiles are built from: several speakers' clips by their exact names (in id order,
    as a full read orders them), one speaker by any spelling, all; and the counts, with the
    generation they were taken at."""
    rng = np.random.default_rng(24)
    for name, n in (("alice", 2), ("Bob", 3), ("carol", 1)):
        store.voiceprints.add_speaker(name, embs(unit(rng, n)), model="m")
    store.voiceprints.add_speaker("alice", embs(unit(rng)), model="m", mode="append")
    ids, vectors, owners = store.voiceprints.vectors()
    some = store.voiceprints.vectors(["alice", "Bob", "nobody"])
    keep = np.array([o != "carol" for o in owners])
    assert some[0].tolist() == ids[keep].tolist() and some[2] == [o for o in owners if o != "carol"]
    assert np.array_equal(some[1], vectors[keep]) and some[2] == ["alice", "alice", "Bob", "Bob", "Bob", "alice"]
    assert (
        store.voiceprints.vectors("bob")[2] == ["Bob"] * 3
        and store.voiceprints.vectors(["bob"])[2] == []
        and len(store.voiceprints.vectors([])[0]) == 0
    )
    assert store.voiceprints.counts() == Counts(store.voiceprints.generation, 3, 7)
    store.voiceprints.remove_speaker("Bob")
    assert store.voiceprints.counts() == Counts(store.voiceprints.generation, 2, 4)


def test_model_guard(store_url):
    rng = np.random.default_rng(2)
    with open_store(store_url, model="model-a", dimension=DIM) as s:
        s.voiceprints.add_speaker("a", embs(unit(rng)), model="model-a")
    with pytest.raises(ModelMismatchError, match="holds embeddings of model-a .*not model-b"):
        open_store(store_url, model="model-b", dimension=DIM)
    with pytest.raises(ModelMismatchError):
        open_store(store_url, model="model-a", dimension=DIM * 2)
    with open_store(store_url) as s:  # listing needs no model
        assert [sp.name for sp in s.voiceprints.speakers()] == ["a"]


def test_deletion_erases_the_bytes(tmp_path):
    rng = np.random.default_rng(3)
    home = tmp_path / "home"
    secret = unit(rng, 3)
    with open_store(home, model="m", dimension=DIM) as s:
        s.voiceprints.add_speaker("keep", embs(unit(rng, 2)), model="m")
        s.voiceprints.add_speaker("erase-me", embs(secret), model="m")
        s.voiceprints.remove_speaker("erase-me")
    on_disk = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    for vec in secret:
        assert vec.tobytes() not in on_disk
        assert vec.tobytes()[:32] not in on_disk  # not even a fragment of it
    assert b"erase-me" not in (home / INDEX_NAME).read_bytes()


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage", "flip"])
def test_lost_or_corrupt_index_is_rebuilt_with_identical_answers(tmp_path, damage, caplog):
    rng = np.random.default_rng(4)
    home = tmp_path / "home"
    queries = unit(rng, 20)
    with open_store(home, model="m", dimension=DIM) as s:
        for i in range(30):
            s.voiceprints.add_speaker(f"s{i}", embs(unit(rng, 2)), model="m")
        before = [
            [(h.embedding_id, h.speaker, h.score) for h in hits] for hits in s.voiceprints.search_many(queries, 5)
        ]
    path = home / INDEX_NAME
    data = path.read_bytes()
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an index at all")
    else:
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    with open_store(home, model="m", dimension=DIM) as s:
        assert not s.maintenance.check().consistent
        after = [[(h.embedding_id, h.speaker, h.score) for h in hits] for hits in s.voiceprints.search_many(queries, 5)]
        assert after == before
        assert s.maintenance.check().consistent
    assert "rebuilding it" in caplog.text


def test_nearest_neighbour_over_1e5_speakers_at_the_products_settings(tmp_path):
    """At 10^5 embeddings the store uses its approximate index (as the product does by default);
    a voice close to an enrolled one still finds exactly the nearest embedding."""
    rng = np.random.default_rng(5)
    n, dim = 100_000, 192
    vectors = unit(rng, n, dim)
    with open_store(tmp_path, model="m", dimension=dim) as s:
        _bulk_enroll(s, vectors)
        assert s.maintenance.index().kind == "sketch"
        ids, stored, names = s.voiceprints.vectors()
        picks = rng.choice(n, 300, replace=False)
        queries = stored[picks] + 0.03 * rng.standard_normal((300, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        expected = np.argmax(queries @ stored.T, axis=1)
        got = s.voiceprints.search_many(queries, 1)
        assert [h[0].embedding_id for h in got] == [int(ids[e]) for e in expected]
        assert [h[0].speaker for h in got] == [names[e] for e in expected]


def test_approximate_index_above_threshold(tmp_path):
    rng = np.random.default_rng(6)
    centres = unit(rng, 300, 64)
    vectors = centres.repeat(10, axis=0) + 0.05 * rng.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with open_store(tmp_path, model="m", dimension=64, approx_threshold=2000) as s:
        _bulk_enroll(s, vectors)
        assert s.maintenance.index().kind == "sketch"
        ids, stored, _ = s.voiceprints.vectors()
        queries = vectors[rng.choice(len(vectors), 300, replace=False)] + 0.02 * rng.standard_normal((300, 64)).astype(
            np.float32
        )
        exact = ids[np.argmax(queries @ stored.T, axis=1)]
        got = np.array([h[0].embedding_id for h in s.voiceprints.search_many(queries, 1)])
        assert np.mean(got == exact) >= 0.99
        s.voiceprints.remove_speaker("spk0")
        assert s.maintenance.check().consistent
        assert "spk0" not in {h.speaker for hits in s.voiceprints.search_many(queries, 10) for h in hits}


def _bulk_enroll(store: Store, vectors: np.ndarray) -> None:
    """Many one-clip speakers in one transaction."""
    store.voiceprints.import_speakers({f"spk{i}": [NewEmbedding(v)] for i, v in enumerate(vectors)}, model="m")


WORKER = textwrap.dedent("""
    import json, random, sys
    import numpy as np
    from store import NewEmbedding, SpeakerNotFoundError, open_store
    home, worker, ops, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(worker)
    nrng = np.random.default_rng(worker)
    store = open_store(home, model="m", dimension=dim)
    expected = {}
    for step in range(ops):
        name = f"w{worker}-s{rng.randrange(12)}"
        op = rng.choice(["enroll", "enroll", "append", "replace", "remove", "search"])
        vecs = nrng.standard_normal((rng.randint(1, 3), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        items = [NewEmbedding(v) for v in vecs]
        if op == "search":
            store.voiceprints.search(vecs[0], 5)
        elif op == "remove":
            try:
                store.voiceprints.remove_speaker(name)
                del expected[name]
            except SpeakerNotFoundError:
                assert name not in expected
        else:
            mode = {"enroll": "append", "append": "append", "replace": "replace"}[op]
            store.voiceprints.add_speaker(name, items, model="m", mode=mode)
            kept = [] if mode == "replace" else expected.get(name, [])
            expected[name] = kept + [v.tobytes().hex() for v in vecs]
    json.dump(expected, sys.stdout)
""")


def test_four_processes_1000_random_operations_agree(store_url):
    home = store_url
    open_store(home, model="m", dimension=DIM).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home), str(w), "250", str(DIM)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    expected: dict[str, list[str]] = {}
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "locked" not in err
        expected.update(json.loads(out))
    assert len(expected) >= 12  # the workers did write (each holds about 6 of its 12 names at the end)
    with open_store(home, model="m", dimension=DIM) as s:
        report = s.maintenance.check()
        assert report.consistent, report.problems
        _, vecs, names = s.voiceprints.vectors()
        actual: dict[str, list[str]] = {}
        for v, name in zip(vecs, names):
            actual.setdefault(name, []).append(v.tobytes().hex())
        assert actual == expected


KILL_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from store import NewEmbedding, open_store
    home, start = sys.argv[1], int(sys.argv[2])
    store = open_store(home, model="m", dimension=64)
    rng = np.random.default_rng(start)
    for i in range(start, start + 1000):
        vecs = rng.standard_normal((400, 64)).astype(np.float32)
        store.voiceprints.add_speaker(f"spk{i}", [NewEmbedding(v) for v in vecs / np.linalg.norm(vecs, axis=1, keepdims=True)], model="m")
        print(f"spk{i}", flush=True)
""")


def test_sigkill_mid_enrollment_is_all_or_nothing(store_url):
    home = store_url
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(7)
    reported: list[str] = []
    for round_ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_WORKER, str(home), str(round_ * 1000)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(1.5 + rng.uniform(0, 1.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        reported += out.split()
    with open_store(home, model="m", dimension=64) as s:
        speakers = {sp.name: sp.clips for sp in s.voiceprints.speakers()}
        assert set(reported) <= set(speakers)  # every enrollment that reported success is there
        assert all(clips == 400 for clips in speakers.values())  # and none is half there
        assert len(speakers) >= len(reported) > 0
        s.maintenance.index()  # the next user catches the derived index up
        report = s.maintenance.check()
        assert report.consistent, report.problems


def test_index_file_roundtrip_is_atomic_and_checked(tmp_path):
    rng = np.random.default_rng(8)
    index = VectorIndex.build(DIM, np.arange(50), unit(rng, 50))
    from store.index import IndexHeader

    index.save(
        tmp_path / "i.faiss", IndexHeader(store_id="x", generation=3, model="m", dimension=DIM, count=0, kind="")
    )
    loaded, header = VectorIndex.load(tmp_path / "i.faiss")
    assert header.generation == 3 and header.count == 50 and sorted(loaded.ids()) == list(range(50))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".index.")]  # no temp file left behind


def test_import_many_speakers_is_one_transaction(store):
    rng = np.random.default_rng(9)
    assert store.voiceprints.import_speakers({f"imp{i}": embs(unit(rng, 2)) for i in range(50)}, model="m") == 50
    assert len(store.voiceprints.speakers()) == 50 and store.maintenance.check().consistent
    before = store.voiceprints.generation
    with pytest.raises(SpeakerExistsError):
        store.voiceprints.import_speakers({"new-one": embs(unit(rng)), "imp3": embs(unit(rng))}, model="m")
    assert "new-one" not in store.voiceprints and store.voiceprints.generation == before


def test_names_follow_one_rule(store):
    """NFC and case-folding make one name; groups, invisible and control characters are refused."""
    rng = np.random.default_rng(10)
    store.voiceprints.add_speaker("Chlo\u0065\u0301", embs(unit(rng)), model="m")  # e + combining accent
    assert [s.name for s in store.voiceprints.speakers()] == ["Chloé"]
    for same in ("Chloé", "CHLOÉ", "  chloé\t", "Ｃｈｌｏé"):
        assert same in store.voiceprints and store.voiceprints.display_name(same) == "Chloé"
        with pytest.raises(SpeakerExistsError, match="already enrolled"):
            store.voiceprints.add_speaker(same, embs(unit(rng)), model="m")
    for bad, why in (
        ("@staff", "names a group"),
        ("ali\u200bce", "invisible"),
        ("bob\x00", "control"),
        ("\u202eevil", "invisible"),
        ("", "empty"),
        ("x" * 201, "over 200"),
    ):
        with pytest.raises(InvalidNameError, match=why):
            store.voiceprints.add_speaker(bad, embs(unit(rng)), model="m")
    assert len(store.voiceprints.speakers()) == 1


def test_a_group_is_never_a_speaker(store):
    """Grants to @staff reach the group's members only, and erasing a speaker keeps the group's grants."""
    rng = np.random.default_rng(11)
    store.voiceprints.add_speaker("staff", embs(unit(rng)), model="m")
    store.voiceprints.add_speaker("ann", embs(unit(rng)), model="m")
    store.policy.grant("@staff", "lab")
    store.policy.add_to_group("staff", "ann")
    assert store.policy.allowed("ann", "lab") and not store.policy.allowed("staff", "lab")
    store.policy.grant("staff", "garage")
    store.voiceprints.remove_speaker("staff")
    assert (
        store.policy.resource("lab").allowed
        == [
            "@staff",
        ]
        and store.policy.resource("garage").allowed == []
    )
    store.voiceprints.remove_speaker("ann")
    assert store.policy.groups() == {} and store.policy.resource("lab").allowed == ["@staff"]


def test_a_process_holding_the_index_reads_only_what_changed(store_url):
    """Another process's adds, removals and replacements reach a process that holds the index
    through the change log: it fetches the changed vectors only, and answers exactly as a new
    process that lists the whole store."""
    rng = np.random.default_rng(21)
    queries = unit(rng, 10)
    with open_store(store_url, model="m", dimension=DIM) as writer, open_store(store_url) as reader:
        for i in range(20):
            writer.voiceprints.add_speaker(f"s{i}", embs(unit(rng, 2)), model="m")
        reader.voiceprints.search(queries[0])  # builds its index: every id listed, every vector read once
        read, rebuilt = [], []
        index = reader._index  # this process's derived index: count what it reads
        changes, rebuild = index._changes, index._rebuild
        index._changes = lambda tx, since: (lambda d: (read.append(len(d.ids)), d)[1])(changes(tx, since))
        index._rebuild = lambda tx, generation: (rebuilt.append(generation), rebuild(tx, generation))[1]
        writer.voiceprints.add_speaker("new", embs(unit(rng, 2)), model="m")
        writer.voiceprints.remove_speaker("s3")
        writer.voiceprints.add_speaker("s4", embs(unit(rng, 1)), model="m", mode="replace")
        writer.voiceprints.add_speaker("s5", embs(unit(rng, 1)), model="m", mode="append")
        seen = [
            [(h.embedding_id, h.speaker, h.score) for h in hits] for hits in reader.voiceprints.search_many(queries, 50)
        ]
        assert read == [4] and rebuilt == []  # the four new vectors, not the store's 40
        assert len(reader.maintenance.index()) == 40 - 2 - 2 + 4
    with open_store(store_url) as fresh:
        assert seen == [
            [(h.embedding_id, h.speaker, h.score) for h in hits] for hits in fresh.voiceprints.search_many(queries, 50)
        ]
        assert fresh.maintenance.check().consistent, fresh.maintenance.check().problems


def test_the_change_log_keeps_the_last_writes_and_a_process_further_behind_reads_all(store_url, monkeypatch):
    from store import derived_index

    monkeypatch.setattr(derived_index, "LOG_GENERATIONS", 3)
    rng = np.random.default_rng(23)
    queries = unit(rng, 5)
    with open_store(store_url, model="m", dimension=DIM) as writer, open_store(store_url) as reader:
        writer.voiceprints.add_speaker("a", embs(unit(rng, 2)), model="m")
        reader.voiceprints.search(queries[0])
        for i in range(5):
            writer.voiceprints.add_speaker(f"b{i}", embs(unit(rng, 1)), model="m")
        now = writer.voiceprints.generation
        assert writer.voiceprints.changes(now - 3) is not None and writer.voiceprints.changes(now - 4) is None
        assert len(writer.voiceprints.changes(now - 3).changed) == 3
        rebuilt = []
        rebuild = reader._index._rebuild
        reader._index._rebuild = lambda tx, generation: (rebuilt.append(generation), rebuild(tx, generation))[1]
        seen = [
            [(h.embedding_id, h.speaker, h.score) for h in hits] for hits in reader.voiceprints.search_many(queries, 10)
        ]
        assert rebuilt == [now]  # five writes behind a log of three: it read everything again
    with open_store(store_url) as fresh:
        assert seen == [
            [(h.embedding_id, h.speaker, h.score) for h in hits] for hits in fresh.voiceprints.search_many(queries, 10)
        ]


def test_the_index_file_is_saved_lazily_in_a_large_store_and_at_once_after_a_deletion(tmp_path):
    """With 3,000 vectors the file may miss 30 (COPY_LAG): three writes of 10 clips leave it as it
    was, and a process that only writes reads no vectors (as ``enroll-speaker`` would); the fourth
    write saves it, and a deletion saves it at once without the erased vector; a new process
    catches up whatever lag it finds."""
    rng = np.random.default_rng(22)
    home = tmp_path / "home"
    with open_store(home, model="m", dimension=DIM) as s:
        s.voiceprints.import_speakers({f"p{i}": embs(unit(rng)) for i in range(3000)}, model="m")
    saved = VectorIndex.read_header(home / INDEX_NAME).generation
    with open_store(home) as writer:
        loads = []
        copy = writer._index._copy  # the index file: count the times a process reads its vectors
        read = copy.read
        copy.read = lambda: (loads.append(1), read())[1]
        for i in range(3):
            writer.voiceprints.add_speaker(f"w{i}", embs(unit(rng, 10)), model="m")
        assert loads == [] and VectorIndex.read_header(home / INDEX_NAME).generation == saved
        late = unit(rng, 10)
        with open_store(home) as reader:  # a new process: the lagging file, caught up
            assert len(reader.maintenance.index()) == 3030
        writer.voiceprints.add_speaker("w3", embs(late), model="m")
        assert VectorIndex.read_header(home / INDEX_NAME).generation == writer.voiceprints.generation == saved + 4
        writer.voiceprints.add_speaker("w4", embs(unit(rng)), model="m")
        secret = unit(rng)
        writer.voiceprints.add_speaker("erase-me", embs(secret), model="m")
        assert VectorIndex.read_header(home / INDEX_NAME).generation < writer.voiceprints.generation
        writer.voiceprints.remove_speaker("erase-me")
        assert VectorIndex.read_header(home / INDEX_NAME).generation == writer.voiceprints.generation
    assert secret.tobytes() not in (home / INDEX_NAME).read_bytes()
    with open_store(home) as s:
        assert [h.speaker for h in s.voiceprints.search(late[0], k=1)] == ["w3"] and len(s.maintenance.index()) == 3041
        assert s.maintenance.check().consistent


def test_one_bulk_import_makes_the_index_file_lag_by_its_vectors_not_by_one_write(tmp_path):
    """The lag is counted in embeddings changed: after imports that each add more than one vector
    per thousand, the file is current, so a new process loads it and fetches no vector."""
    rng = np.random.default_rng(23)
    home = tmp_path / "home"
    with open_store(home, model="m", dimension=DIM) as s:
        s.voiceprints.import_speakers({f"p{i}": embs(unit(rng)) for i in range(2000)}, model="m")
    for batch in range(3):  # three processes, each importing 500 speakers in one write
        with open_store(home) as s:
            s.voiceprints.import_speakers({f"b{batch}-{i}": embs(unit(rng)) for i in range(500)}, model="m")
            generation = s.voiceprints.generation
        assert VectorIndex.read_header(home / INDEX_NAME).generation == generation
    with open_store(home) as s:
        fetched = []
        fetch = s._index._fetch
        s._index._fetch = lambda tx, ids, dim: (fetched.append(len(ids)), fetch(tx, ids, dim))[1]
        assert len(s.maintenance.index()) == 3500 and sum(fetched) == 0


def test_a_schema_2_store_migrates(tmp_path):
    """A store written by the previous release (schema 2, grants by name) opens and keeps its meaning."""
    import sqlite3

    from store.migrate import migrate
    from store.schema import SQLITE
    from store.sqlite_database import SQLiteDatabase

    home = tmp_path / "old"
    home.mkdir()
    db = SQLiteDatabase(home / "speakerid.db")
    migrate(db, SQLITE[:2])
    db.close()
    rng = np.random.default_rng(12)
    conn = sqlite3.connect(home / "speakerid.db")
    conn.executescript("""
        INSERT INTO meta VALUES ('store_id', 'old'), ('generation', '1'), ('model', 'm'), ('dimension', '16'),
                                ('setting.threshold', '0.5');
        INSERT INTO speakers VALUES (1, 'Alice', 't', 't', '{}'), (2, 'bob', 't', 't', '{}');
        INSERT INTO resources VALUES ('door', NULL, 't');
        INSERT INTO grants VALUES ('door', 'Alice', 't'), ('door', '@Staff', 't');
        INSERT INTO group_members VALUES ('Staff', 'bob');
        INSERT INTO events (time, kind, speaker, detail) VALUES
            ('2026-01-01T00:00:00.000+00:00', 'access', 'claim:Alice',
             '{"allow": false, "reason": "voice does not match", "resource": "door", "claim": "Alice",
               "decision_id": "d1", "key_id": "k1", "score": 0.2, "threshold": 0.55, "speaker": null}');
    """)
    conn.executemany(
        "INSERT INTO embeddings (speaker_id, vector, dimension, model, created) VALUES (?, ?, 16, 'm', 't')",
        [(1, unit(rng).tobytes()), (2, unit(rng).tobytes())],
    )
    conn.commit()
    conn.close()
    with open_store(home) as s:
        assert s.maintenance.migrations_applied == [3, 4, 5] and s.maintenance.schema_version() == 5
        assert s.settings.get("threshold") == 0.5 and s.voiceprints.display_name("alice") == "Alice"
        assert s.policy.allowed("Alice", "door") and s.policy.allowed("bob", "door")
        assert s.policy.resource("door").allowed == ["@staff", "Alice"]
        [old] = s.audit.decisions()
        assert (old.decision_id, old.claim, old.allow, old.key_id) == ("d1", "Alice", False, "k1")
        s.maintenance.index()  # this test wrote no index file; the first search builds it
        assert s.maintenance.check().consistent, s.maintenance.check().problems
    with open_store(home) as s:
        assert s.maintenance.migrations_applied == []


def test_a_newer_schema_and_a_damaged_file_are_clean_errors(tmp_path):
    from store import SchemaTooNewError, StoreError

    home = tmp_path / "home"
    open_store(home).close()
    import sqlite3

    conn = sqlite3.connect(home / "speakerid.db")
    conn.execute("INSERT INTO migrations VALUES (99, 'from the future', 't')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match="schema version 99 is newer"):
        open_store(home)
    (home / "speakerid.db").write_bytes(b"SQLite format 3\x00" + bytes(4000))
    with pytest.raises(StoreError, match="speakerid.db"):
        open_store(home)


def test_sqlite_utils_reads_a_store_as_it_is(tmp_path):
    """The CLI users already know for SQLite files lists a store's tables and counts (docs/store.md)."""
    import json
    import subprocess
    import sys

    home = tmp_path / "home"
    with open_store(home, model="m", dimension=DIM) as s:
        rng = np.random.default_rng(9)
        s.voiceprints.add_speaker("alice", embs(unit(rng, 3)), model="m")
        s.voiceprints.add_speaker("bob", embs(unit(rng, 2)), model="m")
    tool = Path(sys.executable).with_name("sqlite-utils")
    done = subprocess.run(
        [str(tool), "tables", "--counts", str(home / "speakerid.db")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    counts = {t["table"]: t["count"] for t in json.loads(done.stdout)}
    assert counts["speakers"] == 2 and counts["embeddings"] == 5
