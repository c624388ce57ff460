"""The embedded store: ``HOME/speakerid.db`` (SQLite, the source of truth) and ``HOME/index.faiss``
(a derived FAISS index, so a new process need not read every vector), private to their owner.

Writers take ``HOME/index.lock`` before their transaction and hold it until the index file is
saved, so a writer that cannot take it fails before committing, and a crash between the commit
and the save only leaves the index behind (the next user catches it up). Erasure: deleted rows
are zeroed in place (``secure_delete``), the write-ahead log is checkpointed and truncated after
every erasing write and on close, and the index file is rewritten without the erased vectors;
temporary index files a killed writer left behind are removed on open.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from filelock import FileLock, Timeout

from .derived_index import IndexCopy
from .errors import IndexFileError, InvalidValueError, StoreError
from .index import DEFAULT_APPROX_THRESHOLD, DEFAULT_CANDIDATES, IndexHeader, VectorIndex
from .migrate import migrate
from .records import CheckReport, IndexState
from .report import compare_index
from .schema import SQLITE
from .sql_store import SQLStore
from .sqlite_database import SQLiteDatabase

log = logging.getLogger(__name__)

DB_NAME = "speakerid.db"
INDEX_NAME = "index.faiss"
LOCK_NAME = "index.lock"
TEMP_PREFIX = ".index."
LOCK_TIMEOUT = 120.0  # seconds a writer waits for another writer's index save


class SQLiteStore(SQLStore):
    def __init__(self, home: Path, db: SQLiteDatabase, *, approx_threshold: int, candidates: int):
        self.home = home
        self.read_only = db.read_only
        self._file_lock = None if db.read_only else FileLock(str(home / LOCK_NAME), timeout=LOCK_TIMEOUT, mode=0o600)
        self.tidied: list[str] = []  # temporary index files removed when this store was opened
        self._candidates = candidates
        super().__init__(db, approx_threshold=approx_threshold, candidates=candidates)
        self._remove_temp_files()

    @classmethod
    def connect(
        cls,
        home: Path | None,
        *,
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        candidates: int = DEFAULT_CANDIDATES,
        read_only: bool | None = None,
    ) -> SQLiteStore:
        if home is None or not str(home):
            raise InvalidValueError("no store location given: pass a folder or a postgresql:// URL")
        _make_private_folder(home)
        if read_only is None:
            read_only = not os.access(home, os.W_OK | os.X_OK)
        path = home / DB_NAME
        if path.is_dir():
            raise StoreError(f"{path}: is a folder, not a database")
        if read_only and not path.is_file():
            raise StoreError(f"{home}: read-only, and holds no store")
        index_path = home / INDEX_NAME
        if index_path.exists() and not index_path.is_file():
            raise StoreError(f"{index_path}: is not a file (a folder?); move it away, the index is rebuilt")
        db = SQLiteDatabase(path, read_only=read_only)
        try:
            verdict = db.quick_check()
            if verdict != "ok":
                raise StoreError(f"{path}: the database is damaged (quick_check: {verdict}); restore it from a backup")
            applied = migrate(db, SQLITE)
            store = cls(home, db, approx_threshold=approx_threshold, candidates=candidates)
            store.maintenance.migrations_applied = applied
            return store
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        self._db.checkpoint()
        super().close()

    # -- the writer lock and the index file ----------------------------------------------------------
    def _write_guard(self) -> AbstractContextManager:
        if self._file_lock is None:
            return nullcontext()
        return self._locked()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._file_lock.acquire()
        except Timeout:
            raise StoreError(
                f"{self.home / LOCK_NAME}: another process has held the index lock for "
                f"{LOCK_TIMEOUT:g} s; nothing was written"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"{self.home / LOCK_NAME}: cannot take the index lock ({exc.strerror or exc}); nothing was written"
            ) from None
        try:
            yield
        finally:
            self._file_lock.release()

    def _index_copy(self) -> IndexCopy:
        return IndexFile(self)

    def _remove_temp_files(self) -> None:
        """Temporary index files of a killed writer may hold erased vectors: remove them, under the
        lock (a live writer's temporary file is its own until it renames it)."""
        if self._file_lock is None:
            return
        try:
            self._file_lock.acquire(timeout=0)
        except (Timeout, OSError):
            return  # a writer is at work; the next open tries again
        try:
            for path in self._temp_files():
                path.unlink(missing_ok=True)
                self.tidied.append(path.name)
                log.warning("%s: removed a temporary index file left by an interrupted write", path)
        finally:
            self._file_lock.release()

    def _temp_files(self) -> list[Path]:
        return sorted(p for p in self.home.glob(TEMP_PREFIX + "*") if p.is_file())

    def _erase_leftovers(self) -> None:
        self._db.checkpoint()

    # -- doctor ------------------------------------------------------------------------------------
    def _check_derived(self, report: CheckReport) -> None:
        with self._index.lock, self._write_guard():
            integrity = self._db.integrity_check()
            if integrity != "ok":
                report.problems.append(f"sqlite integrity_check: {integrity}")
            if self.tidied:
                report.notes.append(
                    f"removed {len(self.tidied)} temporary index files left by an interrupted "
                    f"write ({', '.join(self.tidied)})"
                )
            left = self._temp_files()
            if left:
                report.problems.append(
                    f"{len(left)} temporary index files left by an interrupted write "
                    f"({', '.join(p.name for p in left)}); reopening the store removes them"
                )
            db_ids, db_vecs, _ = self.voiceprints.vectors()
            try:
                index, header = VectorIndex.load(self.home / INDEX_NAME, candidates=self._candidates)
            except IndexFileError as exc:
                if len(db_ids) or self._meta("index_written") == "1":
                    report.problems.append(str(exc))
                return
        report.index = IndexState(
            generation=header.generation,
            count=len(index),
            kind=index.kind,
            model=header.model,
            dimension=header.dimension,
        )
        compare_index(report, index, header.generation, db_ids, db_vecs)
        if header.store_id != self.store_id:
            report.problems.append("index belongs to another database")
        if (
            report.model is not None
            and header.dimension
            and (header.model != report.model or header.dimension != report.dimension)
        ):
            report.problems.append(f"index is for {header.model} ({header.dimension}-d)")


class IndexFile(IndexCopy):
    """``HOME/index.faiss``: the index saved for the next process, written atomically under the
    writers' file lock, with a header saying which store, model and generation it holds."""

    def __init__(self, store: SQLiteStore):
        self._store = store

    def guard(self) -> AbstractContextManager:
        return self._store._write_guard()

    def read(self) -> tuple[VectorIndex | None, IndexHeader | None]:
        store = self._store
        path = store.home / INDEX_NAME
        try:
            index, header = VectorIndex.load(path, candidates=store._candidates)
        except IndexFileError as exc:
            if path.exists() or store._meta("index_written") == "1":
                log.warning("%s; rebuilding it from %s", exc, DB_NAME)
            return None, None
        if not self._belongs_here(header):
            log.warning("%s: built from another database or model; rebuilding it", path)
            return None, None
        return index, header

    def header(self) -> IndexHeader | None:
        header = VectorIndex.read_header(self._store.home / INDEX_NAME)
        return header if header is not None and self._belongs_here(header) else None

    def _belongs_here(self, header: IndexHeader) -> bool:
        store = self._store
        dimension, model = store.voiceprints.dimension, store.voiceprints.model
        if not header.dimension:  # written while the store was empty and bound to no model yet
            return dimension is None
        return (
            header.store_id == store.store_id
            and header.dimension == (dimension or header.dimension)
            and header.model == (model or header.model)
            and header.generation <= store.generation
        )

    def save(self, index: VectorIndex, generation: int) -> None:
        store = self._store
        if store.read_only:
            return
        header = IndexHeader(
            store_id=store.store_id,
            generation=generation,
            model=store.voiceprints.model or "",
            dimension=store.voiceprints.dimension or 0,
            count=0,
            kind="",
        )
        try:
            index.save(store.home / INDEX_NAME, header, temp_prefix=TEMP_PREFIX)
        except OSError as exc:  # the database has the truth; the next process rebuilds
            log.warning(
                "%s: cannot save the index (%s); it is rebuilt from the database when needed",
                store.home / INDEX_NAME,
                exc.strerror or exc,
            )
            return
        if store._meta("index_written") != "1":
            with store._db.write() as tx:
                tx.execute("INSERT INTO meta (key, value) VALUES ('index_written', '1') ON CONFLICT DO NOTHING")

    def forget(self) -> None:
        if not self._store.read_only:
            (self._store.home / INDEX_NAME).unlink(missing_ok=True)


def _make_private_folder(home: Path) -> None:
    """Create the home 0700; an existing one is left as its owner set it, with a warning if others may read it."""
    try:
        if not home.exists():
            home.mkdir(mode=0o700, parents=True)
            return
    except OSError as exc:
        raise StoreError(f"{home}: cannot create the store folder ({exc.strerror or exc})") from None
    if not home.is_dir():
        raise StoreError(f"{home}: is not a folder")
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077 and (home / DB_NAME).exists():
        log.warning("%s: others may read this store (mode %o); chmod 700 it", home, mode)
