"""Where sqlite-utils fits the SQLite backend, measured (docs/architecture.md cites this).

Writes the same rows both ways into the store's own schema: speakers and their 192-d clip
embeddings, in one transaction, as an enrollment or ``import_speakers`` writes them: through the
store's shared SQL (``Tx.many``, one ``executemany`` per table, the statements PostgreSQL runs
too), and through sqlite-utils' ``Table.insert_all``. Then reads every embedding back both ways.
Prints the CPU and the seconds per 10^5 embeddings.

    python benchmarks/sqlite_utils_fit.py [--speakers 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlite_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store import NewEmbedding, open_store  # noqa: E402

from embed_speed import cpu  # noqa: E402


def through_the_store(folder: Path, vectors: np.ndarray) -> float:
    """What an import costs as the product does it: rows, change log, generation, index file."""
    with open_store(folder) as store:
        start = time.perf_counter()
        store.voiceprints.import_speakers({f"p{i:07d}": [NewEmbedding(v)] for i, v in enumerate(vectors)}, model="m")
        return time.perf_counter() - start


def through_the_stores_sql(folder: Path, vectors: np.ndarray) -> float:
    """The rows alone, by the store's shared SQL (``Tx.many``), in one transaction."""
    with open_store(folder) as store:
        db = store._db
        start = time.perf_counter()
        with db.write() as tx:
            tx.many(
                "INSERT INTO speakers (name, name_key, created, updated, metadata) VALUES (?, ?, 't', 't', '{}')",
                [(f"p{i:07d}", f"p{i:07d}") for i in range(len(vectors))],
            )
            ids = {n: i for i, n in tx.all("SELECT id, name FROM speakers")}
            tx.many(
                "INSERT INTO embeddings (speaker_id, vector, dimension, model, clip_sha256, speech_seconds, created) "
                "VALUES (?, ?, ?, 'm', NULL, NULL, 't')",
                [(ids[f"p{i:07d}"], v.tobytes(), len(v)) for i, v in enumerate(vectors)],
            )
        return time.perf_counter() - start


def through_sqlite_utils(folder: Path, vectors: np.ndarray) -> float:
    with open_store(folder):
        pass  # the same schema, migrations applied
    db = sqlite_utils.Database(folder / "speakerid.db")
    start = time.perf_counter()
    with db.conn:
        db["speakers"].insert_all(
            (
                {"name": f"p{i:07d}", "name_key": f"p{i:07d}", "created": "t", "updated": "t", "metadata": "{}"}
                for i in range(len(vectors))
            ),
            batch_size=10_000,
        )
        ids = {name: i for i, name in db.execute("SELECT id, name FROM speakers").fetchall()}
        db["embeddings"].insert_all(
            (
                {
                    "speaker_id": ids[f"p{i:07d}"],
                    "vector": v.tobytes(),
                    "dimension": len(v),
                    "model": "m",
                    "clip_sha256": None,
                    "speech_seconds": None,
                    "created": "t",
                }
                for i, v in enumerate(vectors)
            ),
            batch_size=10_000,
        )
    return time.perf_counter() - start


def read_back(folder: Path) -> tuple[float, float]:
    with open_store(folder) as store:
        start = time.perf_counter()
        store.voiceprints.vectors()
        ours = time.perf_counter() - start
    db = sqlite_utils.Database(folder / "speakerid.db")
    start = time.perf_counter()
    rows = list(db["embeddings"].rows_where(select="id, vector", order_by="id"))
    np.frombuffer(b"".join(r["vector"] for r in rows), dtype=np.float32)
    return ours, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=100_000)
    args = parser.parse_args()
    model, flags = cpu()
    print(f"CPU: {model} [{' '.join(flags)}]")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.speakers, 192)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, tempfile.TemporaryDirectory() as c:
        whole = through_the_store(Path(a), vectors)
        ours = through_the_stores_sql(Path(c), vectors)
        theirs = through_sqlite_utils(Path(b), vectors)
        read_ours, read_theirs = read_back(Path(a))
    per = 100_000 / args.speakers
    print(
        f"rows of {args.speakers:,} speakers of one embedding, one transaction (seconds per 10^5): "
        f"the store's SQL {ours * per:.2f}, sqlite-utils insert_all {theirs * per:.2f}; "
        f"the product's whole import (change log, generation, index file) {whole * per:.2f}"
    )
    print(f"read every embedding: store {read_ours * per:.2f} s, sqlite-utils rows_where {read_theirs * per:.2f} s")


if __name__ == "__main__":
    main()
