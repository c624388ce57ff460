"""Applying the schema's migrations (:mod:`store.schema`): what a database lacks, in one transaction,
serialised across processes; a database from a newer speakerid is refused, never touched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from .database import Database, Tx
from .errors import ReadOnlyStoreError, SchemaTooNewError

Step = str | Callable[[Tx], None]


def now() -> str:
    """UTC, ISO 8601 with milliseconds: sorts as text, the same on every backend."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def applied(tx: Tx) -> set[int]:
    return {int(v) for (v,) in tx.all("SELECT version FROM migrations")}


def migrate(db: Database, migrations: list[tuple[int, str, list[Step]]]) -> list[int]:
    """Apply what this database lacks; the versions applied now (``[]`` when it was up to date).

    Raises :class:`SchemaTooNewError` for a database written by a newer speakerid.
    """
    if getattr(db, "read_only", False):
        with db.read() as tx:
            have = applied(tx)
        _refuse_newer(db, have, max(v for v, _, _ in migrations))
        if {v for v, _, _ in migrations} - have:
            raise ReadOnlyStoreError(
                f"{db.location}: schema version {max(have, default=0)} needs migrating, and the store is read-only"
            )
        return []
    with db.write() as tx:
        db.lock(tx, "speakerid-schema")
        tx.execute(
            "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied TEXT NOT NULL)"
        )
        have = applied(tx)
        _refuse_newer(db, have, max(v for v, _, _ in migrations))
        done = []
        for version, name, steps in migrations:
            if version in have:
                continue
            for step in steps:
                if callable(step):
                    step(tx)
                    continue
                for statement in filter(str.strip, _without_comments(step).split(";")):
                    tx.execute(statement)
            tx.execute("INSERT INTO migrations (version, name, applied) VALUES (?, ?, ?)", [version, name, now()])
            done.append(version)
        return done


def _refuse_newer(db: Database, have: set[int], supported: int) -> None:
    newest = max(have, default=0)
    if newest > supported:
        raise SchemaTooNewError(
            f"{db.location}: schema version {newest} is newer than this speakerid supports "
            f"({supported}); upgrade speakerid"
        )


def _without_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
