"""The store: SQLite and FAISS agree, writes are atomic across processes and kills, deletion erases."""

from __future__ import annotations

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

from store import (INDEX_NAME, ModelMismatchError, NewEmbedding, SpeakerExistsError, SpeakerNotFoundError,
                   Store, VectorIndex)

ROOT = Path(__file__).resolve().parents[1]
DIM = 16


def unit(rng, n=1, dim=DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def embs(vectors) -> list[NewEmbedding]:
    return [NewEmbedding(v, clip_sha256=f"{i:064x}", speech_seconds=2.5) for i, v in enumerate(vectors)]


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "home", model="m", dimension=DIM)
    yield s
    s.close()


def test_enroll_append_replace_and_remove(store):
    rng = np.random.default_rng(0)
    alice = store.add_speaker("alice", embs(unit(rng, 2)), model="m", metadata={"team": "a"})
    assert (alice.clips, alice.speech_seconds, alice.metadata) == (2, 5.0, {"team": "a"})
    with pytest.raises(SpeakerExistsError, match="--append .* --replace"):
        store.add_speaker("alice", embs(unit(rng)), model="m")
    assert store.add_speaker("alice", embs(unit(rng)), model="m", mode="append").clips == 3
    fresh = unit(rng)
    replaced = store.add_speaker("alice", embs(fresh), model="m", mode="replace", metadata={"x": "1"})
    assert replaced.clips == 1 and replaced.metadata == {"x": "1"}
    assert [h.speaker for h in store.search(fresh[0], k=1)] == ["alice"]
    store.remove_speaker("alice")
    assert "alice" not in store and store.search(fresh[0]) == []
    with pytest.raises(SpeakerNotFoundError):
        store.remove_speaker("alice")
    assert [e["kind"] for e in store.events()] == ["enroll", "enroll", "replace", "remove"]


def test_failed_write_leaves_store_unchanged(store):
    rng = np.random.default_rng(1)
    store.add_speaker("bob", embs(unit(rng)), model="m")
    before = (store.generation, store.speakers())
    bad = unit(rng, 2)
    bad[1, 0] = np.nan
    with pytest.raises(Exception):
        store.add_speaker("carol", embs(bad), model="m")
    with pytest.raises(ModelMismatchError):
        store.add_speaker("carol", embs(unit(rng, 1, DIM + 1)), model="m")
    assert (store.generation, store.speakers()) == before


def test_model_guard(tmp_path):
    rng = np.random.default_rng(2)
    with Store.open(tmp_path, model="model-a", dimension=DIM) as s:
        s.add_speaker("a", embs(unit(rng)), model="model-a")
    with pytest.raises(ModelMismatchError, match="holds embeddings of model-a .*not model-b"):
        Store.open(tmp_path, model="model-b", dimension=DIM)
    with pytest.raises(ModelMismatchError):
        Store.open(tmp_path, model="model-a", dimension=DIM * 2)
    with Store.open(tmp_path) as s:  # listing needs no model
        assert [sp.name for sp in s.speakers()] == ["a"]


def test_deletion_erases_the_bytes(tmp_path):
    rng = np.random.default_rng(3)
    home = tmp_path / "home"
    secret = unit(rng, 3)
    with Store.open(home, model="m", dimension=DIM) as s:
        s.add_speaker("keep", embs(unit(rng, 2)), model="m")
        s.add_speaker("erase-me", embs(secret), model="m")
        s.remove_speaker("erase-me")
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
    with Store.open(home, model="m", dimension=DIM) as s:
        for i in range(30):
            s.add_speaker(f"s{i}", embs(unit(rng, 2)), model="m")
        before = [[(h.embedding_id, h.speaker, h.score) for h in hits] for hits in s.search_many(queries, 5)]
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
    with Store.open(home, model="m", dimension=DIM) as s:
        assert not s.check()["consistent"]
        after = [[(h.embedding_id, h.speaker, h.score) for h in hits] for hits in s.search_many(queries, 5)]
        assert after == before
        assert s.check()["consistent"]
    assert "rebuilding it" in caplog.text


def test_exact_nearest_neighbour_over_1e5_speakers(tmp_path):
    rng = np.random.default_rng(5)
    n, dim = 100_000, 192
    vectors = unit(rng, n, dim)
    with Store.open(tmp_path, model="m", dimension=dim, approx_threshold=n + 1) as s:
        _bulk_enroll(s, vectors)
        assert s.index().kind == "flat"
        ids, stored, names = s.vectors()
        queries = unit(rng, 200, dim)
        expected = np.argmax(queries @ stored.T, axis=1)
        got = s.search_many(queries, 1)
        assert [h[0].embedding_id for h in got] == [int(ids[e]) for e in expected]
        assert [h[0].speaker for h in got] == [names[e] for e in expected]


def test_approximate_index_above_threshold(tmp_path):
    rng = np.random.default_rng(6)
    centres = unit(rng, 300, 64)
    vectors = centres.repeat(10, axis=0) + 0.05 * rng.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Store.open(tmp_path, model="m", dimension=64, approx_threshold=2000) as s:
        _bulk_enroll(s, vectors)
        assert s.index().kind == "sketch"
        ids, stored, _ = s.vectors()
        queries = vectors[rng.choice(len(vectors), 300, replace=False)] + 0.02 * rng.standard_normal((300, 64)).astype(np.float32)
        exact = ids[np.argmax(queries @ stored.T, axis=1)]
        got = np.array([h[0].embedding_id for h in s.search_many(queries, 1)])
        assert np.mean(got == exact) >= 0.99
        s.remove_speaker("spk0")
        assert s.check()["consistent"]
        assert "spk0" not in {h.speaker for hits in s.search_many(queries, 10) for h in hits}


def _bulk_enroll(store: Store, vectors: np.ndarray) -> None:
    """Many one-clip speakers, written directly (one transaction) to keep the test quick."""
    with store._write():
        store._bind("m", vectors.shape[1])
        store.db["speakers"].insert_all(({"id": i + 1, "name": f"spk{i}", "created": "t", "updated": "t",
                                          "metadata": "{}"} for i in range(len(vectors))), batch_size=5000)
        store.db["embeddings"].insert_all(({"speaker_id": i + 1, "vector": v.tobytes(), "dimension": vectors.shape[1],
                                            "model": "m", "created": "t"} for i, v in enumerate(vectors)), batch_size=5000)
    store.sync_index()


WORKER = textwrap.dedent("""
    import json, random, sys
    import numpy as np
    from store import NewEmbedding, SpeakerNotFoundError, Store
    home, worker, ops, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(worker)
    nrng = np.random.default_rng(worker)
    store = Store.open(home, model="m", dimension=dim)
    expected = {}
    for step in range(ops):
        name = f"w{worker}-s{rng.randrange(12)}"
        op = rng.choice(["enroll", "enroll", "append", "replace", "remove", "search"])
        vecs = nrng.standard_normal((rng.randint(1, 3), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        items = [NewEmbedding(v) for v in vecs]
        if op == "search":
            store.search(vecs[0], 5)
        elif op == "remove":
            try:
                store.remove_speaker(name)
                del expected[name]
            except SpeakerNotFoundError:
                assert name not in expected
        else:
            mode = {"enroll": "append", "append": "append", "replace": "replace"}[op]
            store.add_speaker(name, items, model="m", mode=mode)
            kept = [] if mode == "replace" else expected.get(name, [])
            expected[name] = kept + [v.tobytes().hex() for v in vecs]
    json.dump(expected, sys.stdout)
""")


def test_four_processes_1000_random_operations_agree(tmp_path):
    home = tmp_path / "home"
    Store.open(home, model="m", dimension=DIM).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), str(w), "250", str(DIM)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(4)]
    expected: dict[str, list[str]] = {}
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "locked" not in err
        expected.update(json.loads(out))
    with Store.open(home, model="m", dimension=DIM) as s:
        report = s.check()
        assert report["consistent"], report["problems"]
        _, vecs, names = s.vectors()
        actual: dict[str, list[str]] = {}
        for v, name in zip(vecs, names):
            actual.setdefault(name, []).append(v.tobytes().hex())
        assert actual == expected


KILL_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from store import NewEmbedding, Store
    home, start = sys.argv[1], int(sys.argv[2])
    store = Store.open(home, model="m", dimension=64)
    rng = np.random.default_rng(start)
    for i in range(start, start + 1000):
        vecs = rng.standard_normal((400, 64)).astype(np.float32)
        store.add_speaker(f"spk{i}", [NewEmbedding(v) for v in vecs / np.linalg.norm(vecs, axis=1, keepdims=True)], model="m")
        print(f"spk{i}", flush=True)
""")


def test_sigkill_mid_enrollment_is_all_or_nothing(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(7)
    reported: list[str] = []
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILL_WORKER, str(home), str(round_ * 1000)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(1.5 + rng.uniform(0, 1.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        reported += out.split()
    with Store.open(home, model="m", dimension=64) as s:
        speakers = {sp.name: sp.clips for sp in s.speakers()}
        assert set(reported) <= set(speakers)  # every enrollment that reported success is there
        assert all(clips == 400 for clips in speakers.values())  # and none is half there
        assert len(speakers) >= len(reported) > 0
        s.index()  # the next open catches the index up
        report = s.check()
        assert report["consistent"], report["problems"]


def test_index_file_roundtrip_is_atomic_and_checked(tmp_path):
    rng = np.random.default_rng(8)
    index = VectorIndex.build(DIM, np.arange(50), unit(rng, 50))
    from store.index import IndexHeader

    index.save(tmp_path / "i.faiss", IndexHeader(store_id="x", generation=3, model="m", dimension=DIM, count=0, kind=""))
    loaded, header = VectorIndex.load(tmp_path / "i.faiss")
    assert header.generation == 3 and header.count == 50 and sorted(loaded.ids()) == list(range(50))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".index.")]  # no temp file left behind


def test_import_many_speakers_is_one_transaction(store):
    rng = np.random.default_rng(9)
    assert store.import_speakers({f"imp{i}": embs(unit(rng, 2)) for i in range(50)}, model="m") == 50
    assert len(store.speakers()) == 50 and store.check()["consistent"]
    before = store.generation
    with pytest.raises(SpeakerExistsError):
        store.import_speakers({"new-one": embs(unit(rng)), "imp3": embs(unit(rng))}, model="m")
    assert "new-one" not in store and store.generation == before
