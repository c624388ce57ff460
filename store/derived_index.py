"""The derived search index: each process keeps one in memory and follows the database's generation.

Whenever the generation moved, the next search catches the index up from the database. A process
that already holds an index reads only what changed: the ``index_changes`` log (schema 4, written
by triggers) names every embedding added, removed or renamed since its generation, so a write to
a store of 10^5 speakers costs the same as to one of ten. A process without one (or behind the
log's start: it keeps the last :data:`LOG_GENERATIONS` writes) lists every id once and fetches the
vectors it lacks.

A backend may also persist the index (an :class:`IndexCopy`: SQLite keeps ``index.faiss`` beside the database so a new
process starts without reading every vector). The copy is saved again once it lags the database
by more than one changed embedding per :data:`COPY_LAG` it holds (a new process catches up at
most 1 % of the vectors; saving costs the whole file, so rarely), and at once after any write
that erases: a deleted vector never stays in it. The database stays the source of
truth, so a lost, stale or damaged copy is only rebuilt or caught up.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import numpy as np

from .database import Tx
from .index import DEFAULT_APPROX_THRESHOLD, DEFAULT_CANDIDATES, IndexHeader, VectorIndex
from .records import Changes, Hit
from .speakers import EMBEDDING_ROWS, embedding_arrays

if TYPE_CHECKING:
    from .sql_store import SQLStore

FETCH_CHUNK = 10_000
LOG_GENERATIONS = 10_000  # writes the change log reaches back; a process further behind reads everything
COPY_LAG = 100  # the persisted copy may miss one changed embedding per this many it holds


class IndexCopy(ABC):
    """A copy of the index a backend keeps for the next process (SQLite: ``index.faiss``)."""

    @abstractmethod
    def guard(self) -> AbstractContextManager:
        """Held while the index is brought up to date (SQLite: a file lock shared by processes)."""

    @abstractmethod
    def read(self) -> tuple[VectorIndex | None, IndexHeader | None]:
        """The copy and its header, or ``(None, None)`` when there is none usable."""

    @abstractmethod
    def header(self) -> IndexHeader | None:
        """The copy's header, without its vectors (``None``: no usable copy)."""

    @abstractmethod
    def save(self, index: VectorIndex, generation: int) -> None: ...

    @abstractmethod
    def forget(self) -> None:
        """Drop the copy."""


class DerivedIndex:
    """The index of one store in one process, following the database's generation."""

    def __init__(
        self,
        core: SQLStore,
        copy: IndexCopy | None,
        *,
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        candidates: int = DEFAULT_CANDIDATES,
    ):
        self._core, self._db, self._copy = core, core._db, copy
        self.approx_threshold, self.candidates = approx_threshold, candidates
        self.lock = threading.RLock()
        self._index: VectorIndex | None = None
        self._index_generation = -1
        self._speaker_of: dict[int, str] = {}

    @property
    def generation(self) -> int:
        """The generation this process's index was last brought to (-1: none yet)."""
        return self._index_generation

    def _guard(self) -> AbstractContextManager:
        return self._copy.guard() if self._copy is not None else nullcontext()

    # -- searching -----------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int = 10) -> list[Hit]:
        return self.search_many(np.asarray(query, dtype=np.float32)[None], k)[0]

    def search_many(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        with self.lock:
            index = self.current()
            if len(index) == 0:
                return [[] for _ in range(len(queries))]
            scores, ids = index.search(queries, k)
            names = self._speaker_of
            return [
                [Hit(int(i), names[int(i)], float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)
            ]

    def current(self) -> VectorIndex:
        """The index at the database's generation (caught up first if it moved)."""
        with self.lock:
            if self._index is not None and self._index_generation == self._core.generation:
                return self._index
            return self.sync()

    def sync(self) -> VectorIndex:
        """Bring the index up to the database's generation and install it."""
        with self.lock, self._guard():
            return self._sync_locked()

    def rebuild(self) -> VectorIndex:
        """Throw every copy away and build it again from the database."""
        with self.lock, self._guard():
            self._index, self._index_generation = None, -1
            if self._copy is not None:
                self._copy.forget()
            return self._sync_locked()

    def keep_up_after_write(self, *, erased: bool) -> None:
        """After a committed write: bring the index (and its persisted copy) up to date if this
        process holds one, or the copy lags too far or may hold what the write erased; otherwise
        the next search catches up. A process that only writes to a large store reads no vectors."""
        with self.lock:
            if self._index is not None or (self._copy is not None and (erased or self._copy_lags(self._copy.header()))):
                self._sync_locked(erased=erased)

    def _copy_lags(self, header: IndexHeader | None, generation: int | None = None) -> bool:
        """Whether the persisted copy (``header``) lags ``generation`` by more embeddings added,
        removed or renamed than one per :data:`COPY_LAG` it holds, counted in the change log (not
        in writes: one import may add 10^5), or by more than the log reaches back."""
        if header is None:
            return True
        with self._db.read() as tx:
            generation = self._generation_in(tx) if generation is None else generation
            if generation <= header.generation:
                return False
            if not self._log_reaches(tx, header.generation):
                return True
            changed = tx.value(
                "SELECT COUNT(DISTINCT embedding_id) FROM index_changes WHERE generation > ? AND generation <= ?",
                [header.generation, generation],
                default=0,
            )
        return int(changed) > header.count // COPY_LAG

    def _sync_locked(self, *, erased: bool = False) -> VectorIndex:
        """Bring the index to the database's generation; save the copy when it lags too far
        (:meth:`_copy_lags`) or, after ``erased``, whenever it is behind at all."""
        with self._db.read() as tx:  # one snapshot of the database
            generation = self._generation_in(tx)
            updated, copy_readable = None, True
            if self._index is not None:
                updated = self._apply_log(tx, self._index, self._index_generation, self._speaker_of)
            if updated is None:
                *updated, copy_readable = self._rebuild(tx, generation)
            index, owners = updated
        if self._copy is not None:
            header = self._copy.header() if copy_readable else None
            if self._copy_lags(header, generation) or (erased and header.generation != generation):
                self._copy.save(index, generation)
        self._index, self._index_generation, self._speaker_of = index, generation, owners
        return index

    def _rebuild(self, tx: Tx, generation: int) -> tuple[VectorIndex, dict[int, str], bool]:
        """Every id and owner listed; vectors from the persisted copy where it has them (or from what
        this process holds, when that is newer), the rest fetched; and whether the copy was readable."""
        persisted, header = self._copy.read() if self._copy is not None else (None, None)
        if persisted is None and self._index is None:  # nothing to start from (PostgreSQL, a new
            return (*self._read_all(tx), header is not None)  # process): one query, ids and owners too
        ids, owners = self._snapshot(tx)
        if header is not None and header.generation == generation:
            return persisted, owners, True
        if self._index is not None and (header is None or self._index_generation >= header.generation):
            persisted = self._index  # what this process holds is the newer base
        return self._catch_up(tx, persisted, ids), owners, header is not None

    @staticmethod
    def _generation_in(tx: Tx) -> int:
        return int(tx.value("SELECT value FROM meta WHERE key = 'generation'", default=0))

    @staticmethod
    def trim_change_log(tx: Tx) -> None:
        """Inside a write: forget changes older than the last :data:`LOG_GENERATIONS` writes (the
        ids of erased embeddings among them), so the log stays the size of recent history."""
        floor = DerivedIndex._generation_in(tx) - LOG_GENERATIONS
        if floor > 0:
            tx.execute("DELETE FROM index_changes WHERE generation <= ?", [floor])
            tx.execute(
                "UPDATE meta SET value = ? WHERE key = 'changes_logged_from' AND CAST(value AS BIGINT) < ?",
                [str(floor), floor],
            )

    def changes(self, since: int) -> Changes | None:
        with self._db.read() as tx:
            return self._changes(tx, since)

    @staticmethod
    def _log_reaches(tx: Tx, since: int) -> bool:
        """Whether the change log holds every change after generation ``since``."""
        logged_from = tx.value("SELECT value FROM meta WHERE key = 'changes_logged_from'")
        return logged_from is not None and since >= int(logged_from)

    def _changes(self, tx: Tx, since: int) -> Changes | None:
        if not self._log_reaches(tx, since):
            return None
        generation = self._generation_in(tx)
        changed = np.array(
            sorted(
                int(i)
                for (i,) in tx.all("SELECT DISTINCT embedding_id FROM index_changes WHERE generation > ?", [since])
            ),
            dtype=np.int64,
        )
        return Changes(generation, changed, *self._fetch(tx, changed, self._core._dimension(tx) or 0))

    def _apply_log(
        self, tx: Tx, index: VectorIndex, since: int, owners: dict[int, str]
    ) -> tuple[VectorIndex, dict[int, str]] | None:
        """``index`` and ``owners`` (at generation ``since``) with the logged changes after it
        applied, or ``None`` when the index needs rebuilding (the log does not reach back that far,
        the first vectors of a new store, or the size crossed the threshold between exact and
        sketched search). Every changed id is removed, then re-added if it still exists, so
        applying a change twice is harmless."""
        delta = self._changes(tx, since)
        if delta is None:
            return None
        if not len(delta.changed):
            return index, owners
        if index.dimension != self._core._dimension(tx):
            return None
        if not self._right_kind(index, len(owners) - sum(int(i) in owners for i in delta.changed) + len(delta.ids)):
            return None
        index.remove(delta.changed)
        index.add(delta.ids, delta.vectors)
        for i in delta.changed:
            owners.pop(int(i), None)
        owners.update(zip((int(i) for i in delta.ids), delta.owners))
        return index, owners

    @staticmethod
    def _snapshot(tx: Tx) -> tuple[np.ndarray, dict[int, str]]:
        """Every embedding id, and its speaker's name."""
        rows = tx.all("SELECT e.id, s.name FROM embeddings e JOIN speakers s ON s.id = e.speaker_id")
        return np.array([r[0] for r in rows], dtype=np.int64), {int(r[0]): r[1] for r in rows}

    def _catch_up(self, tx: Tx, index: VectorIndex | None, want: np.ndarray) -> VectorIndex:
        dim = self._core._dimension(tx)
        if dim is None:
            return VectorIndex(1, candidates=self.candidates)
        if index is not None and (index.dimension != dim or not self._right_kind(index, len(want))):
            index = None
        if index is None:
            return self._read_all(tx)[0]  # ``want`` is every id of this snapshot
        have = index.ids()
        index.remove(np.setdiff1d(have, want, assume_unique=True))
        found, vecs, _ = self._fetch(tx, np.setdiff1d(want, have, assume_unique=True), dim)
        index.add(found, vecs)
        return index

    def _read_all(self, tx: Tx) -> tuple[VectorIndex, dict[int, str]]:
        """The index built from every embedding, and each one's speaker."""
        dim = self._core._dimension(tx)
        if dim is None:
            return VectorIndex(1, candidates=self.candidates), {}
        ids, vecs, names = self._fetch(tx, None, dim)
        index = VectorIndex.build(dim, ids, vecs, approx_threshold=self.approx_threshold, candidates=self.candidates)
        return index, dict(zip(ids.tolist(), names))

    def _right_kind(self, index: VectorIndex, count: int) -> bool:
        # Hysteresis, so a store hovering at the threshold does not rebuild on every write.
        if index.kind == "flat":
            return count < self.approx_threshold
        return count >= self.approx_threshold // 2

    @staticmethod
    def _fetch(tx: Tx, ids: np.ndarray | None, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Ids, vectors and speaker names for ``ids`` (sorted: then in id order; ``None``: every
        row, in one query: 10 lists of 10,000 ids took 1.7 s on PostgreSQL at 10^5); ids deleted
        meanwhile are simply absent."""
        if ids is None:
            return embedding_arrays(tx.all(EMBEDDING_ROWS + " ORDER BY e.id", vectors=True), dim)
        rows = []
        for start in range(0, len(ids), FETCH_CHUNK):
            chunk = [int(i) for i in ids[start : start + FETCH_CHUNK]]
            rows += tx.all(
                EMBEDDING_ROWS + f" WHERE e.id IN ({','.join('?' * len(chunk))}) ORDER BY e.id", chunk, vectors=True
            )
        return embedding_arrays(rows, dim)
