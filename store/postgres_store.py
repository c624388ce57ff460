"""The shared store: one PostgreSQL database (stock, ≥ 14, no extensions) for many processes and
machines, through psycopg 3 and a connection pool.

Each process keeps its derived index (FAISS and, above it, speakerid's speaker profiles) in memory
and follows the database's generation: every search first reads the generation (one indexed
row) and catches up when it moved, so a write committed on one machine is seen by the next
question asked on any other. Writers queue on the generation row's lock, so a check made inside a
write still holds at its commit.

Erasure: deleting a speaker deletes their rows in one transaction; PostgreSQL keeps the bytes of
deleted rows in the table's pages until they are reused, so every erasing write is followed by
``VACUUM FULL`` of the speaker and archive tables, which rewrites them into new files and drops the old ones.
Copies may still exist where this code cannot reach: write-ahead log segments until the server
recycles them, replicas, and backups (see SECURITY.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from .database import Database, Tx
from .errors import StoreError
from .index import DEFAULT_APPROX_THRESHOLD, DEFAULT_CANDIDATES
from .migrate import migrate
from .records import CheckReport, IndexState
from .report import compare_index
from .schema import POSTGRES
from .sql_store import SQLStore

log = logging.getLogger(__name__)

POOL_SIZE = 8
CONNECT_TIMEOUT = 10.0
ERASED_TABLES = ("embeddings", "speakers", "turns", "voices")


def redact(url: str) -> str:
    """The URL without its password, for messages and logs.

    >>> redact("postgresql://door:s3cret@db.example:5432/voices")
    'postgresql://door:***@db.example:5432/voices'
    """
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class PostgresDatabase(Database):
    backend = "postgresql"

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE):
        super().__init__()
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StoreError(
                "PostgreSQL needs the postgres extra: pip install 'speakerid-voiceprint[postgres]'"
            ) from None
        self.location = redact(url)
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # its retries would print; ours is one line
        try:  # one plain connection first: its error says why (refused, no such database, password)
            psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except psycopg.Error as exc:
            raise StoreError(f"{self.location}: cannot connect to PostgreSQL ({_reason(exc)})") from None
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=CONNECT_TIMEOUT,
            open=False,
            name="speakerid",
        )
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # psycopg_pool.PoolTimeout, OperationalError: all mean "not reachable"
            self.pool.close()
            raise StoreError(f"{self.location}: cannot connect to PostgreSQL ({_reason(exc)})") from None

    def _begin(self, statement: str) -> tuple[Tx, Callable[[bool], None]]:
        conn = self.pool.getconn()
        try:
            conn.execute(statement)
        except BaseException:
            self.pool.putconn(conn)
            raise

        def finish(commit: bool) -> None:
            try:
                conn.execute("COMMIT" if commit else "ROLLBACK")
            finally:
                self.pool.putconn(conn)

        return Tx(conn, _placeholders, binary_results=True), finish

    def _begin_write(self) -> tuple[Tx, Callable[[bool], None]]:
        return self._begin("BEGIN")

    def _begin_read(self) -> tuple[Tx, Callable[[bool], None]]:
        return self._begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def lock(self, tx: Tx, name: str) -> None:
        tx.value("SELECT pg_advisory_xact_lock(hashtext(?))", [name])

    def vacuum(self, tables: tuple[str, ...]) -> None:
        """``VACUUM FULL``: rewrite the tables so deleted rows' bytes are in no data file."""
        with self.pool.connection() as conn:
            for table in tables:
                conn.execute(f"VACUUM FULL {table}")

    def close(self) -> None:
        self.pool.close()


_converted: dict[str, str] = {}


def _placeholders(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (the store's SQL holds no ``%`` or ``?`` literal)."""
    out = _converted.get(sql)
    if out is None:
        out = _converted[sql] = sql.replace("?", "%s")
    return out


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class PostgresStore(SQLStore):
    @classmethod
    def connect(
        cls,
        url: str,
        *,
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        candidates: int = DEFAULT_CANDIDATES,
        pool_size: int = POOL_SIZE,
    ) -> PostgresStore:
        db = PostgresDatabase(url, pool_size=pool_size)
        try:
            applied = migrate(db, POSTGRES)
            store = cls(db, approx_threshold=approx_threshold, candidates=candidates)
            store.maintenance.migrations_applied = applied
            return store
        except BaseException:
            db.close()
            raise

    def _after_copy(self, tx: Tx) -> None:
        for table in ("speakers", "embeddings", "audit", "events", "attempts", "recordings", "voices", "turns"):
            tx.value(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
            )

    def _erase_leftovers(self) -> None:
        try:
            self._db.vacuum(ERASED_TABLES)
        except Exception as exc:  # the rows are gone either way; say what is left to do
            log.warning(
                "%s: VACUUM FULL after an erasure failed (%s); run it by hand so deleted vectors leave the data files",
                self.location,
                _reason(exc),
            )

    def _check_derived(self, report: CheckReport) -> None:
        """This process's in-memory index against the database (it is the only derived copy)."""
        with self._index.lock:
            index = self._index.current()
            generation = self._index.generation
        db_ids, db_vecs, _ = self.voiceprints.vectors()
        report.index = IndexState(
            generation=generation,
            count=len(index),
            kind=index.kind,
            model=report.model or "",
            dimension=index.dimension,
        )
        compare_index(report, index, generation, db_ids, db_vecs)
