"""The one way SQL reaches a database: transactions (:class:`Tx`) handed out by a :class:`Database`.

The store's SQL is written once, in the dialect SQLite and PostgreSQL share (``?`` placeholders,
``ON CONFLICT``, ``RETURNING``); each backend's :class:`Database` converts placeholders, opens
and commits transactions, and serialises writers its own way. A write that changes what
identification sees (``bump=True``) moves the store's generation, so every process that holds a
derived index (FAISS, speaker profiles) knows to catch up.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

BUMP_GENERATION = "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'generation'"


class Tx:
    """A transaction's cursor. ``sql`` uses ``?`` placeholders whatever the backend.
    ``binary_results``: the connection can return results in binary format (psycopg)."""

    def __init__(self, conn: Any, convert: Callable[[str], str], *, binary_results: bool = False):
        self._conn = conn
        self._convert = convert
        self._binary_results = binary_results

    def execute(self, sql: str, params: Sequence = ()) -> int:
        """Run a statement; the number of rows it changed."""
        return self._conn.execute(self._convert(sql), tuple(params)).rowcount

    def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        return self._conn.execute(self._convert(sql), tuple(params)).fetchone()

    def all(self, sql: str, params: Sequence = (), *, vectors: bool = False) -> list[tuple]:
        """Every row. ``vectors``: rows carrying embeddings, which PostgreSQL then sends in binary
        (as text a ``bytea`` is hex, twice the bytes to send and decode: 0.61 -> 0.35 s for 10^5)."""
        if vectors and self._binary_results:
            return list(self._conn.execute(self._convert(sql), tuple(params), binary=True).fetchall())
        return list(self._conn.execute(self._convert(sql), tuple(params)).fetchall())

    def value(self, sql: str, params: Sequence = (), default: Any = None) -> Any:
        row = self.one(sql, params)
        return default if row is None else row[0]

    def many(self, sql: str, rows: Iterable[Sequence]) -> None:
        cursor = self._conn.cursor()
        try:
            cursor.executemany(self._convert(sql), [tuple(r) for r in rows])
        finally:
            cursor.close()


class Database(ABC):
    """Connections and transactions for one store. Thread-safe; a transaction opened inside
    another on the same thread joins it."""

    backend: str = ""
    location: str = ""

    def __init__(self) -> None:
        self._local = threading.local()

    @abstractmethod
    def _begin_write(self) -> tuple[Tx, Callable[[bool], None]]:
        """Start a write transaction: its :class:`Tx` and ``finish(commit)``."""

    @abstractmethod
    def _begin_read(self) -> tuple[Tx, Callable[[bool], None]]:
        """Start a read-only transaction that sees one snapshot."""

    @abstractmethod
    def lock(self, tx: Tx, name: str) -> None:
        """Inside a write: serialise check-then-write sequences about ``name`` across processes."""

    @abstractmethod
    def close(self) -> None: ...

    @contextmanager
    def write(self, *, bump: bool = False) -> Iterator[Tx]:
        """One write transaction; ``bump`` moves the generation (identification must catch up)."""
        current = getattr(self._local, "tx", None)
        if current is not None:  # nested: part of the enclosing transaction
            if bump and not self._local.bumped:
                current.execute(BUMP_GENERATION)
                self._local.bumped = True
            yield current
            return
        tx, finish = self._begin_write()
        self._local.tx, self._local.bumped = tx, bump
        try:
            if bump:  # first, so that on PostgreSQL the row lock queues concurrent writers
                tx.execute(BUMP_GENERATION)
            yield tx
        except BaseException:
            self._local.tx = None
            finish(False)
            raise
        self._local.tx = None
        finish(True)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent snapshot for several queries (inside a write: that write's view)."""
        current = getattr(self._local, "tx", None)
        if current is not None:
            yield current
            return
        tx, finish = self._begin_read()
        self._local.tx, self._local.bumped = tx, False
        try:
            yield tx
        finally:
            self._local.tx = None
            finish(True)

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """A single read in its own snapshot."""
        with self.read() as tx:
            return tx.all(sql, params)

    def scalar(self, sql: str, params: Sequence = (), default: Any = None) -> Any:
        with self.read() as tx:
            return tx.value(sql, params, default)
