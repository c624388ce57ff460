"""The store over a SQL database, shared by the SQLite and PostgreSQL backends.

:class:`SQLStore` is the handle: it holds the database, what its roles share (the model binding,
the generation, the change log, the order of locks around a write) and the roles themselves,
each in its own module (:mod:`store.speakers`, :mod:`store.policy`, :mod:`store.audit`,
:mod:`store.archive`). A
backend supplies the :class:`~store.database.Database` and, where it has them, a persisted copy of
the index, a lock that orders writers before they commit, and the erasure of leftovers after a
delete.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from .archive import SQLArchive
from .audit import SQLAuditLog
from .database import Database, Tx
from .derived_index import DerivedIndex, IndexCopy
from .errors import ModelMismatchError
from .index import VectorIndex
from .migrate import applied, now
from .policy import SQLAccessPolicy
from .records import CheckReport
from .report import check_database
from .roles import Maintenance, Settings, Store
from .schema import SCHEMA_VERSION
from .speakers import SQLVoiceprints


class SQLStore(Store):
    """A :class:`Store` whose source of truth is a SQL database."""

    def __init__(self, db: Database, *, approx_threshold: int, candidates: int):
        self._db = db
        self.backend, self.location = db.backend, db.location
        if not getattr(db, "read_only", False):
            with db.write() as tx:
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('store_id', ?) ON CONFLICT DO NOTHING", [uuid.uuid4().hex]
                )
                tx.execute("INSERT INTO meta (key, value) VALUES ('generation', '0') ON CONFLICT DO NOTHING")
        self._index = DerivedIndex(self, self._index_copy(), approx_threshold=approx_threshold, candidates=candidates)
        self.voiceprints = SQLVoiceprints(self, self._index)
        self.policy = SQLAccessPolicy(self)
        self.audit = SQLAuditLog(self)
        self.archive = SQLArchive(self)
        self.settings = SQLSettings(self)
        self.maintenance = SQLMaintenance(self, self._index)

    def close(self) -> None:
        self._db.close()

    # -- what a backend adds -----------------------------------------------------------------------
    def _index_copy(self) -> IndexCopy | None:
        """A copy of the index kept for the next process (SQLite's file), or None."""
        return None

    def _write_guard(self) -> AbstractContextManager:
        """Taken before a write transaction that changes what identification sees."""
        return nullcontext()

    def _erase_leftovers(self) -> None:
        """After a delete: make the deleted bytes unrecoverable where the backend can."""

    def _check_derived(self, report: CheckReport) -> None:
        """Compare the backend's derived copies with the database (fills ``report``)."""

    def _after_copy(self, tx: Tx) -> None:
        """After rows were copied in with their ids (:mod:`store.copy`): make new ids follow them."""

    # -- what the roles share ----------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self._meta("generation") or 0)

    @property
    def store_id(self) -> str:
        return self._meta("store_id") or ""

    @staticmethod
    def _dimension(tx: Tx) -> int | None:
        value = tx.value("SELECT value FROM meta WHERE key = 'dimension'")
        return int(value) if value is not None else None

    @staticmethod
    def _generation_in(tx: Tx) -> int:
        return int(tx.value("SELECT value FROM meta WHERE key = 'generation'", default=0))

    def _check_model(self, tx: Tx, model: str, dimension: int | None) -> None:
        bound = tx.value("SELECT value FROM meta WHERE key = 'model'")
        dim = self._dimension(tx)
        if bound is not None and (bound != model or (dimension is not None and dim != dimension)):
            raise ModelMismatchError(
                f"{self.location} holds embeddings of {bound} ({dim}-d), not {model}"
                f"{f' ({dimension}-d)' if dimension else ''}; use the same model or another store"
            )

    def _bind(self, tx: Tx, model: str, dimension: int) -> None:
        """Inside a write: refuse another model, and bind a new store to this one."""
        self._check_model(tx, model, dimension)
        tx.execute("INSERT INTO meta (key, value) VALUES ('model', ?) ON CONFLICT DO NOTHING", [model])
        tx.execute("INSERT INTO meta (key, value) VALUES ('dimension', ?) ON CONFLICT DO NOTHING", [str(dimension)])

    @contextmanager
    def _changing(self, *, erases: bool = False) -> Iterator[Tx]:
        """A write that changes what identification sees: the backend's writer lock first (so a
        writer that cannot take it fails before committing), the transaction with the generation
        moved, then the derived index kept up and erased bytes cleaned away."""
        with self._write_guard():
            with self._db.write(bump=True) as tx:
                yield tx
                self._index.trim_change_log(tx)
            self._index.keep_up_after_write(erased=erases)
        if erases:
            self._erase_leftovers()

    def _meta(self, key: str) -> str | None:
        return self._db.scalar("SELECT value FROM meta WHERE key = ?", [key])

    @staticmethod
    def _event(tx: Tx, kind: str, speaker: str | None, /, **detail: Any) -> None:
        tx.execute(
            "INSERT INTO events (time, kind, speaker, detail) VALUES (?, ?, ?, ?)",
            [now(), kind, speaker, json.dumps(detail)],
        )


class SQLSettings(Settings):
    def __init__(self, core: SQLStore):
        self._core = core

    def get(self, key: str, default: Any = None) -> Any:
        value = self._core._db.scalar("SELECT value FROM settings WHERE key = ?", [key])
        return json.loads(value) if value is not None else default

    def set(self, key: str, value: Any) -> None:
        with self._core._db.write() as tx:
            if value is None:
                tx.execute("DELETE FROM settings WHERE key = ?", [key])
            else:
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    [key, json.dumps(value)],
                )
            shown = value if value is None or isinstance(value, (int, float, str, bool)) else "..."
            self._core._event(tx, "setting", None, key=key, value=shown)


class SQLMaintenance(Maintenance):
    def __init__(self, core: SQLStore, index: DerivedIndex):
        self._core, self._index = core, index
        self.migrations_applied = []

    def schema_version(self) -> int:
        with self._core._db.read() as tx:
            return max(applied(tx), default=0)

    def index(self) -> VectorIndex:
        return self._index.current()

    def rebuild_index(self) -> VectorIndex:
        return self._index.rebuild()

    def check(self) -> CheckReport:
        report = check_database(self._core._db, self._core.backend, SCHEMA_VERSION)
        self._core._check_derived(report)
        return report

    def repair(self) -> CheckReport:
        self.rebuild_index()
        return self.check()
