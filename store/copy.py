"""Moving a voiceprint database between backends (SQLite ↔ PostgreSQL), checked.

Every table is copied row for row, ids included (grants and group members point at speaker ids;
the audit log keeps its order), in one transaction on the destination, which must be empty.
Afterwards each table's row count and a sha256 over its rows in id order must agree on both
sides, vectors byte for byte; the destination's derived index is then built. The destination
gets a store id of its own and starts at generation 1, so no process mistakes one for the other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .errors import ConflictError, StoreError
from .sql_store import SQLStore

# Parents before children; ``meta`` holds the model binding (store id and generation stay per store).
TABLES: list[tuple[str, str]] = [
    ("speakers", "id, name, name_key, created, updated, metadata"),
    ("embeddings", "id, speaker_id, vector, dimension, model, clip_sha256, speech_seconds, created"),
    ("api_keys", "id, hash, role, name, created, revoked"),
    ("resources", "name, threshold, far, created"),
    ("grants", "resource, speaker_id, grp, created"),
    ("group_members", "grp, speaker_id"),
    ("audit", "id, decision_id, time, key_id, resource, claim, mode, allow, reason, speaker, score, threshold"),
    ("events", "id, time, kind, speaker, detail"),
    ("settings", "key, value"),
    ("recordings", "id, path, sha256, duration, added"),
    ("voices", "id, number, created"),
    ("turns", "id, recording_id, start_s, end_s, speaker_id, voice_id, vector, score"),
]
ORDER = {
    "grants": "resource, speaker_id, grp",
    "group_members": "grp, speaker_id",
    "resources": "name",
    "settings": "key",
    "api_keys": "id",
}
BOOLEANS = {"audit": {"allow"}}  # SQLite keeps 0/1, PostgreSQL wants true/false
COPIED_META = ("model", "dimension", "last_voice")  # last_voice: unknown-N numbers are never reused
CHUNK = 5_000


@dataclass
class CopyReport:
    source: str
    destination: str
    rows: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "destination": self.destination,
            "rows": self.rows,
            "sha256": self.digests,
            "checked": True,
        }


def copy_store(source: SQLStore, destination: SQLStore) -> CopyReport:
    """Copy everything from ``source`` into the empty ``destination``; raise if the check fails."""
    if destination.voiceprints.speakers() or destination._db.scalar("SELECT COUNT(*) FROM api_keys"):
        raise ConflictError(f"{destination.location} is not empty; copy into a new store")
    report = CopyReport(source=source.location, destination=destination.location)
    with source._db.read() as src, destination._db.write(bump=True) as dst:
        for key in COPIED_META:
            value = src.value("SELECT value FROM meta WHERE key = ?", [key])
            if value is not None:
                dst.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = excluded.value",
                    [key, value],
                )
        for table, columns in TABLES:
            names = [c.strip() for c in columns.split(",")]
            flags = [name in BOOLEANS.get(table, ()) for name in names]
            marks = ", ".join("?" * len(names))
            rows = [
                [
                    bool(v) if flag and v is not None else bytes(v) if isinstance(v, memoryview) else v
                    for v, flag in zip(row, flags)
                ]
                for row in src.all(f"SELECT {columns} FROM {table} ORDER BY {ORDER.get(table, 'id')}")
            ]
            for start in range(0, len(rows), CHUNK):
                dst.many(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows[start : start + CHUNK])
        destination._after_copy(dst)
    for table, columns in TABLES:
        theirs, ours = _digest(source, table, columns), _digest(destination, table, columns)
        if theirs != ours:
            raise StoreError(
                f"copy check failed: {table} holds {ours[0]} rows in {destination.location}, "
                f"{theirs[0]} in {source.location}, or their contents differ; the destination is not usable"
            )
        report.rows[table], report.digests[table] = theirs
    destination.maintenance.rebuild_index()
    return report


def _digest(store: SQLStore, table: str, columns: str) -> tuple[int, str]:
    h = hashlib.sha256()
    rows = store._db.query(f"SELECT {columns} FROM {table} ORDER BY {ORDER.get(table, 'id')}")
    for row in rows:
        h.update(
            json.dumps(
                [
                    v.hex() if isinstance(v, (bytes, memoryview)) else _plain(v)
                    for v in (bytes(x) if isinstance(x, memoryview) else x for x in row)
                ]
            ).encode()
        )
    return len(rows), h.hexdigest()


def _plain(value):
    """Values as both backends agree on them: numbers and booleans (SQLite keeps 0/1) as floats."""
    if value is None or isinstance(value, str):
        return value
    return float(value)
