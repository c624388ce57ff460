"""SQLite connections for the embedded store: one file, WAL, ``synchronous=FULL``, ``secure_delete``.

Writers queue on ``BEGIN IMMEDIATE`` (SQLite allows one writer at a time), so a check made inside a
write transaction still holds when the write commits. The database file and its WAL/shm companions
are created private to their owner (SQLite gives the companions the database file's mode).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .database import Database, Tx
from .errors import StoreError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 60_000


class SQLiteDatabase(Database):
    backend = "sqlite"

    def __init__(self, path: Path, *, read_only: bool = False):
        super().__init__()
        self.path = path
        self.location = str(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        try:
            if read_only:  # a home we may not write: no WAL index can be created, so read it as immutable
                uri = f"file:{path}?mode=ro&immutable=1"
                self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                if not path.exists():
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
                self.conn = sqlite3.connect(
                    path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
                self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                retry(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
                self.conn.execute("PRAGMA synchronous = FULL")
                self.conn.execute("PRAGMA secure_delete = ON")  # erased rows are zeroed, not left in free pages
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the database ({exc})") from None

    def quick_check(self) -> str:
        """SQLite's ``quick_check``: ``"ok"`` or the first problem it found."""
        with self._lock:
            try:
                return str(self.conn.execute("PRAGMA quick_check(1)").fetchone()[0])
            except sqlite3.DatabaseError as exc:
                return str(exc)

    def integrity_check(self) -> str:
        with self._lock:
            return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def _begin_write(self) -> tuple[Tx, Callable[[bool], None]]:
        if self.read_only:
            from .errors import ReadOnlyStoreError

            raise ReadOnlyStoreError(f"{self.path}: the store's folder is read-only; this needs to write")
        self._lock.acquire()
        try:
            retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        except BaseException:
            self._lock.release()
            raise
        return Tx(self.conn, _same), self._finisher()

    def _begin_read(self) -> tuple[Tx, Callable[[bool], None]]:
        self._lock.acquire()
        try:
            self.conn.execute("BEGIN")
        except BaseException:
            self._lock.release()
            raise
        return Tx(self.conn, _same), self._finisher()

    def _finisher(self) -> Callable[[bool], None]:
        def finish(commit: bool) -> None:
            try:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT" if commit else "ROLLBACK")
            finally:
                self._lock.release()

        return finish

    def lock(self, tx: Tx, name: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already made this the only writer."""

    def checkpoint(self) -> bool:
        """Fold the WAL into the database and truncate it, so erased pages do not linger in it."""
        if self.read_only:
            return True
        for _ in range(50):
            with self._lock:
                busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.05)
        log.warning("%s: readers kept the write-ahead log busy; it is truncated at the next checkpoint", self.path)
        return False

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _same(sql: str) -> str:
    return sql


def retry(action, attempts: int = 20):
    """Run ``action``, waiting out the rare SQLITE_BUSY the busy timeout does not cover."""
    for attempt in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
