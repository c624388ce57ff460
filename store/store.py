"""The voiceprint store: SQLite (the source of truth) plus a FAISS index derived from it.

Every write is one SQLite transaction that also bumps ``generation``. The index file records the
generation it reflects; whoever finds it behind (a reader on open, a writer after committing)
brings it up to date from SQLite under a file lock. A crash between the commit and the index
write therefore loses nothing: the next open sees a stale index and catches it up.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import sqlite_utils
from filelock import FileLock

from .errors import IndexFileError, ModelMismatchError, SpeakerExistsError, SpeakerNotFoundError, StoreError
from .index import DEFAULT_APPROX_THRESHOLD, DEFAULT_CANDIDATES, IndexHeader, VectorIndex
from .schema import SCHEMA_VERSION, migrate, now

log = logging.getLogger(__name__)

DB_NAME = "speakerid.db"
INDEX_NAME = "index.faiss"
LOCK_NAME = "index.lock"
BUSY_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class NewEmbedding:
    """One enrolled clip's embedding, as handed to the store."""

    vector: np.ndarray
    clip_sha256: str | None = None
    speech_seconds: float | None = None


@dataclass(frozen=True)
class Speaker:
    name: str
    clips: int
    speech_seconds: float
    created: str
    updated: str
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Hit:
    """One nearest enrolled embedding: its row id, whose it is, and its cosine to the query."""

    embedding_id: int
    speaker: str
    score: float


class Store:
    """Open with :meth:`open`; safe to share between threads and between processes.

    Example
    -------
    >>> store = Store.open(home, model="speechbrain/spkrec-ecapa-voxceleb", dimension=192)  # doctest: +SKIP
    >>> store.add_speaker("alice", [NewEmbedding(vec)])                                    # doctest: +SKIP
    >>> store.search(vec, k=5)[0].speaker                                                  # doctest: +SKIP
    'alice'
    """

    def __init__(self, home: Path, conn: sqlite3.Connection, *, approx_threshold: int, candidates: int):
        self.home = home
        self.db = sqlite_utils.Database(conn)
        self.approx_threshold = approx_threshold
        self.candidates = candidates
        self._lock = threading.RLock()
        self._file_lock = FileLock(str(home / LOCK_NAME))
        self._index: VectorIndex | None = None
        self._index_generation = -1
        self._speaker_of: dict[int, str] = {}  # embedding id -> speaker name, for the loaded index

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, home: str | Path, *, model: str | None = None, dimension: int | None = None,
             approx_threshold: int = DEFAULT_APPROX_THRESHOLD, candidates: int = DEFAULT_CANDIDATES) -> "Store":
        """Open (creating if needed) the store in ``home``.

        With ``model``/``dimension`` given, refuse a store bound to another model. A store binds to
        the model of its first enrollment.
        """
        home = Path(home).expanduser()
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{home}: cannot create the store folder ({exc.strerror or exc})") from None
        try:
            conn = sqlite3.connect(home / DB_NAME, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # erased rows are zeroed, not left in free pages
            version = _retry(lambda: migrate(conn))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{home / DB_NAME}: cannot open the database ({exc})") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"{home / DB_NAME}: schema version {version} is newer than this speakerid supports ({SCHEMA_VERSION})")
        store = cls(home, conn, approx_threshold=approx_threshold, candidates=candidates)
        with store._write(bump=False):
            store._meta_default("store_id", uuid.uuid4().hex)
            store._meta_default("generation", "0")
        if model is not None:
            store.check_model(model, dimension)
        return store

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- model guard -------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        return self._meta("model")

    @property
    def dimension(self) -> int | None:
        value = self._meta("dimension")
        return int(value) if value is not None else None

    def check_model(self, model: str, dimension: int | None) -> None:
        bound, dim = self.model, self.dimension
        if bound is not None and (bound != model or (dimension is not None and dim != dimension)):
            raise ModelMismatchError(
                f"{self.home} holds embeddings of {bound} ({dim}-d), not {model}"
                f"{f' ({dimension}-d)' if dimension else ''}; use the same model or another --home"
            )

    # -- writing -----------------------------------------------------------------------------
    def add_speaker(self, name: str, embeddings: Sequence[NewEmbedding], *, model: str,
                    mode: str = "new", metadata: dict | None = None) -> Speaker:
        """Write a speaker's embeddings in one transaction.

        ``mode``: ``"new"`` (the name must be free), ``"append"`` (add clips, creating the speaker
        if needed) or ``"replace"`` (drop the speaker's old clips first).
        """
        if mode not in {"new", "append", "replace"}:
            raise ValueError(f"mode must be new, append or replace, not {mode!r}")
        vectors = _stack(name, embeddings)
        with self._write():
            self._bind(model, vectors.shape[1])
            stamp = now()
            row = self._speaker_row(name)
            if row is not None and mode == "new":
                raise SpeakerExistsError(name)
            if row is None:
                speaker_id = self.db["speakers"].insert(
                    {"name": name, "created": stamp, "updated": stamp, "metadata": json.dumps(metadata or {})}
                ).last_pk
            else:
                speaker_id = row["id"]
                merged = {} if mode == "replace" else json.loads(row["metadata"])
                merged.update(metadata or {})
                self.db["speakers"].update(speaker_id, {"updated": stamp, "metadata": json.dumps(merged)})
                if mode == "replace":
                    self.db.execute("DELETE FROM embeddings WHERE speaker_id = ?", [speaker_id])
            self._insert_embeddings(speaker_id, vectors, embeddings, model, stamp)
            self._event("replace" if (row is not None and mode == "replace") else "enroll", name,
                        clips=len(embeddings))
        self.sync_index()
        return self.speaker(name)

    def import_speakers(self, speakers: dict[str, Sequence[NewEmbedding]], *, model: str) -> int:
        """Add many new speakers in one transaction (e.g. a voiceprint migration); all or nothing."""
        if not speakers:
            return 0
        stacked = {name: _stack(name, embeddings) for name, embeddings in speakers.items()}
        with self._write():
            for name, embeddings in speakers.items():
                vectors = stacked[name]
                self._bind(model, vectors.shape[1])
                if self._speaker_row(name) is not None:
                    raise SpeakerExistsError(name)
                stamp = now()
                speaker_id = self.db["speakers"].insert(
                    {"name": name, "created": stamp, "updated": stamp, "metadata": "{}"}).last_pk
                self._insert_embeddings(speaker_id, vectors, embeddings, model, stamp)
            self._event("import", None, speakers=len(speakers))
        self.sync_index()
        return len(speakers)

    def _bind(self, model: str, dimension: int) -> None:
        """Inside a write: refuse another model, and bind a new store to this one."""
        self.check_model(model, dimension)
        self._meta_default("model", model)
        self._meta_default("dimension", str(dimension))

    def _insert_embeddings(self, speaker_id: int, vectors: np.ndarray, embeddings: Sequence[NewEmbedding],
                           model: str, stamp: str) -> None:
        self.db["embeddings"].insert_all(
            {"speaker_id": speaker_id, "vector": vec.tobytes(), "dimension": vectors.shape[1], "model": model,
             "clip_sha256": e.clip_sha256, "speech_seconds": e.speech_seconds, "created": stamp}
            for vec, e in zip(vectors, embeddings))

    def remove_speaker(self, name: str) -> None:
        """Erase a speaker: rows, vectors and index entries; deleted bytes are zeroed on disk."""
        with self._write():
            row = self._speaker_row(name)
            if row is None:
                raise SpeakerNotFoundError(name)
            self.db.execute("DELETE FROM embeddings WHERE speaker_id = ?", [row["id"]])
            self.db.execute("DELETE FROM speakers WHERE id = ?", [row["id"]])
            self.db.execute("DELETE FROM grants WHERE principal = ?", [name])
            self.db.execute("DELETE FROM group_members WHERE speaker = ?", [name])
            self._event("remove", name)
        self._checkpoint()
        self.sync_index()

    def set_setting(self, key: str, value) -> None:
        """Store a per-store setting (JSON value), e.g. the calibrated decision threshold."""
        with self._write(bump=False):
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [f"setting.{key}", json.dumps(value)])
            self._event("setting", None, key=key, value=value)

    def setting(self, key: str, default=None):
        value = self._meta(f"setting.{key}")
        return json.loads(value) if value is not None else default

    def settings(self) -> dict:
        rows = self.db.execute("SELECT key, value FROM meta WHERE key LIKE 'setting.%'").fetchall()
        return {k[len("setting."):]: json.loads(v) for k, v in rows}

    def log_event(self, kind: str, speaker: str | None = None, /, **detail) -> None:
        """Append to the audit table (never audio, never vectors)."""
        with self._write(bump=False):
            self._event(kind, speaker, **detail)

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction for tables that do not touch embeddings (keys, grants, ...)."""
        with self._write(bump=False):
            yield self.db

    # -- reading -----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    def speaker(self, name: str) -> Speaker:
        found = self._speakers("WHERE s.name = ?", [name])
        if not found:
            raise SpeakerNotFoundError(name)
        return found[0]

    def speakers(self) -> list[Speaker]:
        return self._speakers("", [])

    def clip_digests(self, name: str) -> set[str]:
        """sha256 of every clip enrolled for ``name`` (to refuse enrolling the same recording twice)."""
        rows = self.db.execute("SELECT e.clip_sha256 FROM embeddings e JOIN speakers s ON s.id = e.speaker_id "
                               "WHERE s.name = ? AND e.clip_sha256 IS NOT NULL", [name]).fetchall()
        return {r[0] for r in rows}

    def __contains__(self, name: str) -> bool:
        return self._speaker_row(name) is not None

    def vectors(self, name: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(ids, vectors, speaker names)`` from SQLite, for one speaker or all."""
        sql = "SELECT e.id, e.vector, s.name FROM embeddings e JOIN speakers s ON s.id = e.speaker_id"
        rows = list(self.db.execute(sql + (" WHERE s.name = ?" if name else "") + " ORDER BY e.id",
                                    [name] if name else []).fetchall())
        dim = self.dimension or 0
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        return ids, vecs, [r[2] for r in rows]

    def search(self, query: np.ndarray, k: int = 10) -> list[Hit]:
        """The ``k`` enrolled embeddings nearest to ``query`` (cosine), best first."""
        return self.search_many(np.asarray(query, dtype=np.float32)[None], k)[0]

    def search_many(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        with self._lock:
            index = self._current_index()
            if len(index) == 0:
                return [[] for _ in range(len(queries))]
            scores, ids = index.search(queries, k)
            names = self._speaker_of
            return [[Hit(int(i), names[int(i)], float(s)) for s, i in zip(srow, irow) if i >= 0]
                    for srow, irow in zip(scores, ids)]

    def index(self) -> VectorIndex:
        """The up-to-date FAISS index (rebuilt or caught up first if needed)."""
        with self._lock:
            return self._current_index()

    def events(self, since: str | None = None, kind: str | None = None) -> list[dict]:
        where, params = [], []
        if since:
            where.append("time >= ?")
            params.append(since)
        if kind:
            where.append("kind = ?")
            params.append(kind)
        rows = self.db["events"].rows_where(" AND ".join(where) or None, params, order_by="id")
        return [{**r, "detail": json.loads(r["detail"])} for r in rows]

    def check(self) -> dict:
        """Compare the index file on disk with SQLite without repairing anything (``doctor``)."""
        with self._lock, self._file_lock:
            integrity = self.db.execute("PRAGMA integrity_check").fetchone()[0]
            with self._read():
                generation = self.generation
                db_ids, db_vecs, _ = self.vectors()
            problems: list[str] = [] if integrity == "ok" else [f"sqlite integrity_check: {integrity}"]
            report = {"generation": generation, "model": self.model, "dimension": self.dimension,
                      "speakers": len(self.speakers()), "embeddings": len(db_ids), "index": None, "notes": []}
            try:
                index, header = VectorIndex.load(self.home / INDEX_NAME, candidates=self.candidates)
            except IndexFileError as exc:
                if len(db_ids) or self._index_expected:
                    problems.append(str(exc))
            else:
                have = index.ids()
                missing = np.setdiff1d(db_ids, have)
                extra = np.setdiff1d(have, db_ids)
                common = np.intersect1d(db_ids, have)
                row = {int(i): k for k, i in enumerate(db_ids)}
                differ = [int(i) for i in common if not np.array_equal(index.vector(int(i)), db_vecs[row[int(i)]])]
                report["index"] = {"generation": header.generation, "count": len(index), "kind": index.kind,
                                   "model": header.model, "dimension": header.dimension}
                if header.store_id != self._meta("store_id"):
                    problems.append("index belongs to another database")
                behind = header.generation < generation
                if behind:  # a write committed and its process ended before saving the index
                    report["notes"].append(
                        f"index is at generation {header.generation}, database at {generation}: the last "
                        "write's process ended before saving the derived index; it catches up on next use")
                elif header.generation != generation:
                    problems.append(f"index is at generation {header.generation}, database at {generation}")
                if self.model is not None and header.dimension and \
                        (header.model != self.model or header.dimension != self.dimension):
                    problems.append(f"index is for {header.model} ({header.dimension}-d)")
                for label, ids in (("missing from", missing), ("extra in", extra)):
                    if len(ids) and not behind:  # ids are never reused, so a lagging index may only lack or keep some
                        problems.append(f"{len(ids)} embeddings {label} the index")
                if differ:
                    problems.append(f"{len(differ)} vectors differ between index and database")
            report["problems"] = problems
            report["consistent"] = not problems
            return report

    # -- the derived index -------------------------------------------------------------------
    def sync_index(self) -> VectorIndex:
        """Bring the index file up to the database's generation (under the file lock) and load it."""
        with self._lock, self._file_lock:
            index, header = self._read_index_file()
            with self._read():  # ids and vectors from one snapshot of the database
                target = self._snapshot_ids()
                if header is not None and header.generation == target[0]:
                    self._install(index, target)
                    return index
                index = self._catch_up(index, target)
            index.save(self.home / INDEX_NAME, self._header(target[0]))
            if not self._index_expected:
                with self._write(bump=False):
                    self._meta_default("index_written", "1")
            self._install(index, target)
            return index

    def rebuild_index(self) -> VectorIndex:
        """Throw the index away and build it again from SQLite."""
        with self._lock, self._file_lock:
            (self.home / INDEX_NAME).unlink(missing_ok=True)
            self._index = None
        return self.sync_index()

    @property
    def _index_expected(self) -> bool:
        """Once an index file has been written, its absence is worth a warning."""
        return self._meta("index_written") == "1"

    def _current_index(self) -> VectorIndex:
        if self._index is not None and self._index_generation == self.generation:
            return self._index
        return self.sync_index()

    def _read_index_file(self) -> tuple[VectorIndex | None, IndexHeader | None]:
        path = self.home / INDEX_NAME
        try:
            index, header = VectorIndex.load(path, candidates=self.candidates)
        except IndexFileError as exc:
            if path.exists() or self._index_expected:
                log.warning("%s; rebuilding it from %s", exc, DB_NAME)
            return None, None
        if not header.dimension:  # written while the store was empty and bound to no model yet
            return (index, header) if self.dimension is None else (None, None)
        if header.store_id != self._meta("store_id") or header.dimension != (self.dimension or header.dimension) \
                or header.model != (self.model or header.model) or header.generation > self.generation:
            log.warning("%s: built from another database or model; rebuilding it", path)
            return None, None
        return index, header

    def _snapshot_ids(self) -> tuple[int, np.ndarray, dict[int, str]]:
        """The generation, embedding ids and their speakers (call inside :meth:`_read`)."""
        generation = self.generation
        rows = self.db.execute("SELECT e.id, s.name FROM embeddings e JOIN speakers s ON s.id = e.speaker_id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return generation, ids, {int(r[0]): r[1] for r in rows}

    def _catch_up(self, index: VectorIndex | None, target: tuple[int, np.ndarray, dict[int, str]]) -> VectorIndex:
        _, want, _ = target
        dim = self.dimension
        if dim is None:
            return VectorIndex(1, candidates=self.candidates)
        if index is not None and not self._right_kind(index, len(want)):
            index = None
        if index is None:
            ids, vecs = self._fetch(want)
            return VectorIndex.build(dim, ids, vecs, approx_threshold=self.approx_threshold, candidates=self.candidates)
        have = index.ids()
        index.remove(np.setdiff1d(have, want, assume_unique=True))
        ids, vecs = self._fetch(np.setdiff1d(want, have, assume_unique=True))
        index.add(ids, vecs)
        return index

    def _right_kind(self, index: VectorIndex, count: int) -> bool:
        # Hysteresis, so a store hovering at the threshold does not rebuild on every write.
        if index.kind == "flat":
            return count < self.approx_threshold
        return count >= self.approx_threshold // 2

    def _fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for ``ids`` from SQLite; ids deleted meanwhile are simply absent."""
        dim = self.dimension or 0
        found_ids, blobs = [], []
        for start in range(0, len(ids), 10_000):
            chunk = [int(i) for i in ids[start:start + 10_000]]
            marks = ",".join("?" * len(chunk))
            for row_id, blob in self.db.execute(f"SELECT id, vector FROM embeddings WHERE id IN ({marks})", chunk):
                found_ids.append(row_id)
                blobs.append(blob)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
        return np.array(found_ids, dtype=np.int64), vecs

    def _install(self, index: VectorIndex, target: tuple[int, np.ndarray, dict[int, str]]) -> None:
        self._index, self._index_generation, self._speaker_of = index, target[0], target[2]

    def _header(self, generation: int) -> IndexHeader:
        return IndexHeader(store_id=self._meta("store_id") or "", generation=generation, model=self.model or "",
                           dimension=self.dimension or 0, count=0, kind="")

    # -- SQLite helpers ----------------------------------------------------------------------
    @contextmanager
    def _write(self, bump: bool = True) -> Iterator[None]:
        """One write transaction; ``BEGIN IMMEDIATE`` so concurrent writers queue, never deadlock."""
        with self._lock:
            if self.db.conn.in_transaction:  # nested in this thread's transaction: part of it
                yield
                if bump:
                    self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                return
            _retry(lambda: self.db.execute("BEGIN IMMEDIATE"))
            try:
                yield
                if bump:
                    self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock:
            self.db.execute("BEGIN")
            try:
                yield
            finally:
                if self.db.conn.in_transaction:
                    self.db.execute("COMMIT")

    def _checkpoint(self) -> None:
        """Move the WAL into the database and truncate it, so erased pages do not linger there."""
        for _ in range(50):
            busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
        log.warning("%s: readers kept the write-ahead log busy; it is truncated at the next checkpoint", DB_NAME)

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _meta_default(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", [key, value])

    def _speaker_row(self, name: str) -> dict | None:
        return next(self.db["speakers"].rows_where("name = ?", [name]), None)

    def _speakers(self, where: str, params: list) -> list[Speaker]:
        sql = f"""SELECT s.name, s.created, s.updated, s.metadata, COUNT(e.id) AS clips,
                         COALESCE(SUM(e.speech_seconds), 0) AS speech
                  FROM speakers s LEFT JOIN embeddings e ON e.speaker_id = s.id {where}
                  GROUP BY s.id ORDER BY s.name"""
        return [Speaker(name=r["name"], clips=r["clips"], speech_seconds=float(r["speech"]), created=r["created"],
                        updated=r["updated"], metadata=json.loads(r["metadata"]))
                for r in self.db.query(sql, params)]

    def _event(self, kind: str, speaker: str | None, /, **detail) -> None:
        self.db["events"].insert({"time": now(), "kind": kind, "speaker": speaker, "detail": json.dumps(detail)})


def _stack(name: str, embeddings: Sequence[NewEmbedding]) -> np.ndarray:
    """A speaker's embeddings as one float32 matrix; refuse none at all, or NaN/inf values."""
    if not embeddings:
        raise StoreError(f"no embeddings to enroll for {name!r}")
    vectors = np.stack([np.asarray(e.vector, dtype=np.float32).reshape(-1) for e in embeddings])
    if not np.isfinite(vectors).all():
        raise StoreError(f"embeddings for {name!r} contain NaN or infinite values")
    return vectors


def _retry(action, attempts: int = 20):
    """Run ``action``, waiting out the rare SQLITE_BUSY the busy timeout does not cover."""
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
