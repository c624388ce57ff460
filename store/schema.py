"""The SQLite schema, as an ordered list of migrations recorded in the ``migrations`` table."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

# (version, name, SQL). Append only: a released migration never changes.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial", """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE speakers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}'
        );
        -- AUTOINCREMENT: an id is never reused, so a stale index can never map it to another voice.
        CREATE TABLE embeddings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
            vector BLOB NOT NULL,
            dimension INTEGER NOT NULL,
            model TEXT NOT NULL,
            clip_sha256 TEXT,
            speech_seconds REAL,
            created TEXT NOT NULL
        );
        CREATE INDEX embeddings_speaker ON embeddings(speaker_id);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            kind TEXT NOT NULL,
            speaker TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_time ON events(time);
    """),
    (2, "access control: api keys, resources, grants, groups", """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'client')),
            name TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            revoked TEXT
        );
        CREATE TABLE resources (
            name TEXT PRIMARY KEY,
            threshold REAL,
            created TEXT NOT NULL
        );
        -- principal: a speaker name, or '@group'
        CREATE TABLE grants (
            resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,
            principal TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (resource, principal)
        );
        CREATE TABLE group_members (
            grp TEXT NOT NULL,
            speaker TEXT NOT NULL,
            PRIMARY KEY (grp, speaker)
        );
        CREATE INDEX events_kind_speaker ON events(kind, speaker, id);
    """),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks, each in its own transaction; return the version."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT version FROM migrations")}
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            if conn.execute("SELECT 1 FROM migrations WHERE version = ?", (version,)).fetchone() is None:
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations VALUES (?, ?, ?)", (version, name, now()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    newest = conn.execute("SELECT MAX(version) FROM migrations").fetchone()[0] or 0
    return int(newest)
