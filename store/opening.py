"""Opening a store: a ``postgresql://`` URL is the shared PostgreSQL backend, anything else a
folder for the embedded SQLite one. Kept apart from the backends, so no class imports its own
subclasses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .roles import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """
    >>> is_postgres_url("postgresql://door@db/voices"), is_postgres_url("/srv/voices")
    (True, False)
    """
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def open_store(
    location: str | os.PathLike | None, *, model: str | None = None, dimension: int | None = None, **options: Any
) -> Store:
    """Open (creating if needed) the store at ``location``: a ``postgresql://`` URL or a folder.

    With ``model``/``dimension``, refuse a store bound to another model.
    """
    if is_postgres_url(location):
        from .postgres_store import PostgresStore

        store: Store = PostgresStore.connect(str(location), **options)
    else:
        from .sqlite_store import SQLiteStore

        store = SQLiteStore.connect(Path(os.fspath(location)).expanduser() if location else None, **options)
    if model is not None:
        try:
            store.voiceprints.check_model(model, dimension)
        except BaseException:
            store.close()
            raise
    return store
