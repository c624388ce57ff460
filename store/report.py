"""The database half of ``speakerid doctor``: invariants every backend's rows must keep.

The backend adds what only it can check (SQLite's integrity check and its index file; the
in-memory index of a PostgreSQL process) to the same :class:`~store.records.CheckReport`.
"""

from __future__ import annotations

import numpy as np

from .database import Database
from .index import VectorIndex
from .migrate import applied
from .records import CheckReport


def check_database(db: Database, backend: str, schema_version: int) -> CheckReport:
    with db.read() as tx:
        meta = dict(tx.all("SELECT key, value FROM meta"))
        dimension = int(meta["dimension"]) if "dimension" in meta else None
        report = CheckReport(
            backend=backend,
            location=db.location,
            schema_version=max(applied(tx), default=0),
            generation=int(meta.get("generation", 0)),
            model=meta.get("model"),
            dimension=dimension,
            speakers=int(tx.value("SELECT COUNT(*) FROM speakers", default=0)),
            embeddings=int(tx.value("SELECT COUNT(*) FROM embeddings", default=0)),
        )
        if report.schema_version < schema_version:
            report.problems.append(
                f"schema version {report.schema_version}, expected {schema_version}; run: speakerid db migrate"
            )
        empty = tx.value(
            "SELECT COUNT(*) FROM speakers s WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.speaker_id = s.id)",
            default=0,
        )
        if empty:
            report.problems.append(f"{empty} speakers have no embeddings")
        if report.embeddings:
            other = tx.value(
                "SELECT COUNT(*) FROM embeddings WHERE model <> ? OR dimension <> ?",
                [report.model or "", dimension or 0],
                default=0,
            )
            if other:
                report.problems.append(
                    f"{other} embeddings are not of the store's model {report.model} ({dimension}-d)"
                )
            bad = 0
            for (blob,) in tx.all("SELECT vector FROM embeddings", vectors=True):
                vector = np.frombuffer(bytes(blob), dtype=np.float32)
                bad += len(vector) != dimension or not np.isfinite(vector).all()
            if bad:
                report.problems.append(f"{bad} stored vectors are the wrong length or hold NaN/inf")
    return report


def compare_index(report: CheckReport, index: VectorIndex, generation: int, db_ids, db_vecs) -> None:
    """Ids and vectors of a derived index against the database's (fills ``report``)."""
    have = index.ids()
    behind = generation < report.generation
    if behind:  # saved lazily in large stores, or a write's process ended before saving it
        report.notes.append(
            f"index is at generation {generation}, database at {report.generation}: it is saved "
            "again once it lags by more than one changed embedding per 100 it holds (or a "
            "write's process ended before saving it); it catches up on next use"
        )
    elif generation != report.generation:
        report.problems.append(f"index is at generation {generation}, database at {report.generation}")
    for label, ids in (("missing from", np.setdiff1d(db_ids, have)), ("extra in", np.setdiff1d(have, db_ids))):
        if len(ids) and not behind:  # ids are never reused, so a lagging index may only lack or keep some
            report.problems.append(f"{len(ids)} embeddings {label} the index")
    row = {int(i): k for k, i in enumerate(db_ids)}
    differ = [
        int(i) for i in np.intersect1d(db_ids, have) if not np.array_equal(index.vector(int(i)), db_vecs[row[int(i)]])
    ]
    if differ:
        report.problems.append(f"{len(differ)} vectors differ between index and database")
