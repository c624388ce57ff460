"""The store's schema as numbered migrations, recorded in a ``migrations`` table.

SQLite stores made by earlier releases walk 1 → 2 → 3 → 4 → 5; a new PostgreSQL database starts
at 3 with the same tables in PostgreSQL's types. Later versions (4: the index change log, 5: the
archive of timelines) are written once per dialect with the same number, so ``speakerid db
migrate`` means the same on both. Append only: a released migration never changes. How they are
applied: :mod:`store.migrate`.
"""

from __future__ import annotations

import json

from .database import Tx
from .migrate import Step
from .names import name_key


def _keys_for_existing_speakers(tx: Tx) -> None:
    """Fill ``name_key``; two old names with one key keep working by exact name (the second gets
    a key of its own, so the unique index can be built)."""
    seen: set[str] = set()
    for speaker_id, name in tx.all("SELECT id, name FROM speakers ORDER BY id"):
        key = name_key(name)
        if key in seen:
            key = f"{key}#{speaker_id}"
        seen.add(key)
        tx.execute("UPDATE speakers SET name_key = ? WHERE id = ?", [key, speaker_id])


def _policy_by_speaker_id(tx: Tx) -> None:
    """Grants and group members pointed at speakers by name, so a speaker called ``@staff`` could
    meet the group ``@staff``; they now point at speaker rows (erased with the speaker)."""
    ids = {name: i for i, name in tx.all("SELECT id, name FROM speakers")}
    for resource, principal, created in tx.all("SELECT resource, principal, created FROM grants_v2"):
        if principal.startswith("@"):
            tx.execute(
                "INSERT INTO grants (resource, speaker_id, grp, created) VALUES (?, NULL, ?, ?)",
                [resource, name_key(principal[1:]), created],
            )
        elif principal in ids:
            tx.execute(
                "INSERT INTO grants (resource, speaker_id, grp, created) VALUES (?, ?, NULL, ?)",
                [resource, ids[principal], created],
            )
    for grp, speaker in tx.all("SELECT grp, speaker FROM group_members_v2"):
        if speaker in ids:
            tx.execute(
                "INSERT INTO group_members (grp, speaker_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [name_key(grp), ids[speaker]],
            )


def _audit_from_events(tx: Tx) -> None:
    for time, detail in tx.all("SELECT time, detail FROM events WHERE kind = 'access' ORDER BY id"):
        d = json.loads(detail)
        tx.execute(
            INSERT_DECISION,
            [
                d.get("decision_id") or "",
                time,
                d.get("key_id"),
                d.get("resource") or "",
                d.get("claim"),
                "verify" if d.get("claim") else "identify",
                bool(d.get("allow")),
                d.get("reason") or "",
                d.get("speaker"),
                d.get("score"),
                d.get("threshold"),
            ],
        )
    tx.execute("DELETE FROM events WHERE kind = 'access'")


_GENERATION = "(SELECT CAST(value AS {int}) FROM meta WHERE key = 'generation')"
_CHANGE_LOG = """
    CREATE TABLE index_changes (generation {int} NOT NULL, embedding_id {int} NOT NULL);
    CREATE INDEX index_changes_generation ON index_changes(generation);
"""


def _log_starts_now(tx: Tx) -> None:
    """The log is complete from this generation on; an index built earlier catches up the old way."""
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('changes_logged_from', "
        "COALESCE((SELECT value FROM meta WHERE key = 'generation'), '0')) ON CONFLICT DO NOTHING"
    )


def _sqlite_change_triggers(tx: Tx) -> None:
    """Every embedding added, removed or changed, and every embedding of a renamed speaker, is
    logged with the generation of the write (bumped first, so the trigger reads the new one)."""
    generation = _GENERATION.format(int="INTEGER")
    for name, event, ids in (
        ("added", "INSERT ON embeddings", "VALUES ({g}, NEW.id)"),
        ("removed", "DELETE ON embeddings", "VALUES ({g}, OLD.id)"),
        ("changed", "UPDATE OF speaker_id, vector ON embeddings", "VALUES ({g}, NEW.id)"),
        ("renamed", "UPDATE OF name ON speakers", "SELECT {g}, id FROM embeddings WHERE speaker_id = NEW.id"),
    ):
        tx.execute(
            f"CREATE TRIGGER index_change_{name} AFTER {event} BEGIN "
            f"INSERT INTO index_changes (generation, embedding_id) {ids.format(g=generation)}; END"
        )


def _postgres_change_triggers(tx: Tx) -> None:
    """The same log as :func:`_sqlite_change_triggers`, as PostgreSQL trigger functions."""
    generation = _GENERATION.format(int="BIGINT")
    tx.execute(f"""CREATE FUNCTION speakerid_embedding_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO index_changes (generation, embedding_id)
            VALUES ({generation}, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
            RETURN NULL;
        END $$""")
    tx.execute(f"""CREATE FUNCTION speakerid_speaker_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO index_changes (generation, embedding_id)
            SELECT {generation}, id FROM embeddings WHERE speaker_id = NEW.id;
            RETURN NULL;
        END $$""")
    tx.execute(
        "CREATE TRIGGER index_change_embedding AFTER INSERT OR DELETE OR UPDATE OF speaker_id, vector "
        "ON embeddings FOR EACH ROW EXECUTE FUNCTION speakerid_embedding_changed()"
    )
    tx.execute(
        "CREATE TRIGGER index_change_renamed AFTER UPDATE OF name ON speakers "
        "FOR EACH ROW EXECUTE FUNCTION speakerid_speaker_renamed()"
    )


INSERT_DECISION = (
    "INSERT INTO audit (decision_id, time, key_id, resource, claim, mode, allow, reason, speaker, score, "
    "threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_API_KEYS = """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'client')),
            name TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            revoked TEXT
        );
"""

# Tables of schema 3 that read the same in both dialects apart from the column types.
_POLICY_TABLES = """
    CREATE TABLE grants (
        resource TEXT NOT NULL REFERENCES resources(name) ON DELETE CASCADE,
        speaker_id {id} REFERENCES speakers(id) ON DELETE CASCADE,
        grp TEXT,
        created TEXT NOT NULL,
        CHECK ((speaker_id IS NULL) <> (grp IS NULL))
    );
    CREATE UNIQUE INDEX grants_speaker ON grants(resource, speaker_id) WHERE speaker_id IS NOT NULL;
    CREATE UNIQUE INDEX grants_group ON grants(resource, grp) WHERE grp IS NOT NULL;
    CREATE TABLE group_members (
        grp TEXT NOT NULL,
        speaker_id {id} NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
        PRIMARY KEY (grp, speaker_id)
    );
    CREATE INDEX group_members_speaker ON group_members(speaker_id);
    CREATE TABLE audit (
        id {serial},
        decision_id TEXT NOT NULL,
        time TEXT NOT NULL,
        key_id TEXT,
        resource TEXT NOT NULL,
        claim TEXT,
        mode TEXT NOT NULL,
        allow BOOLEAN NOT NULL,
        reason TEXT NOT NULL,
        speaker TEXT,
        score {real},
        threshold {real}
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE INDEX audit_resource ON audit(resource, time);
    CREATE TABLE attempts (
        id {serial},
        subject TEXT NOT NULL,
        started TEXT NOT NULL,
        outcome TEXT
    );
    CREATE INDEX attempts_subject ON attempts(subject, id);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Schema 5: the archive of timelines. A turn is one enrolled speaker's or one unknown voice's
# (never both); erasing either erases its turns, vectors included (ON DELETE CASCADE).
_ARCHIVE = """
    CREATE TABLE recordings (
        id {serial},
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL UNIQUE,
        duration {real} NOT NULL,
        added TEXT NOT NULL
    );
    CREATE TABLE voices (
        id {serial},
        number {int} NOT NULL UNIQUE,
        created TEXT NOT NULL
    );
    CREATE TABLE turns (
        id {serial},
        recording_id {id} NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
        start_s {real} NOT NULL,
        end_s {real} NOT NULL,
        speaker_id {id} REFERENCES speakers(id) ON DELETE CASCADE,
        voice_id {id} REFERENCES voices(id) ON DELETE CASCADE,
        vector {blob} NOT NULL,
        score {real},
        CHECK ((speaker_id IS NULL) <> (voice_id IS NULL))
    );
    CREATE INDEX turns_recording ON turns(recording_id, start_s);
    CREATE INDEX turns_speaker ON turns(speaker_id);
    CREATE INDEX turns_voice ON turns(voice_id);
"""

SQLITE: list[tuple[int, str, list[Step]]] = [
    (
        1,
        "initial",
        [
            """
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
    """
        ],
    ),
    (
        2,
        "access control: api keys, resources, grants, groups",
        [
            _API_KEYS
            + """
        CREATE TABLE resources (
            name TEXT PRIMARY KEY,
            threshold REAL,
            created TEXT NOT NULL
        );
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
    """
        ],
    ),
    (
        3,
        "names keyed, grants by speaker id, audit and lockout tables, settings, resource FAR",
        [
            """
        ALTER TABLE speakers ADD COLUMN name_key TEXT;
        ALTER TABLE resources ADD COLUMN far REAL;
        ALTER TABLE grants RENAME TO grants_v2;
        ALTER TABLE group_members RENAME TO group_members_v2;
        """,
            _keys_for_existing_speakers,
            "CREATE UNIQUE INDEX speakers_name_key ON speakers(name_key)",
            _POLICY_TABLES.format(id="INTEGER", serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL"),
            _policy_by_speaker_id,
            _audit_from_events,
            """
        INSERT INTO settings (key, value) SELECT substr(key, 9), value FROM meta WHERE substr(key, 1, 8) = 'setting.';
        DELETE FROM meta WHERE substr(key, 1, 8) = 'setting.';
        DROP TABLE grants_v2;
        DROP TABLE group_members_v2;
        """,
        ],
    ),
    (4, "index change log", [_CHANGE_LOG.format(int="INTEGER"), _sqlite_change_triggers, _log_starts_now]),
    (
        5,
        "archive: recordings, unknown voices, turns",
        [
            _ARCHIVE.format(
                id="INTEGER", int="INTEGER", serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL", blob="BLOB"
            )
        ],
    ),
]

POSTGRES: list[tuple[int, str, list[Step]]] = [
    (
        3,
        "initial (schema 3 of the SQLite store, in PostgreSQL types)",
        [
            """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE speakers (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            name_key TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE embeddings (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            speaker_id BIGINT NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
            vector BYTEA NOT NULL,
            dimension INTEGER NOT NULL,
            model TEXT NOT NULL,
            clip_sha256 TEXT,
            speech_seconds DOUBLE PRECISION,
            created TEXT NOT NULL
        );
        CREATE INDEX embeddings_speaker ON embeddings(speaker_id);
        CREATE TABLE events (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            time TEXT NOT NULL,
            kind TEXT NOT NULL,
            speaker TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_time ON events(time);
    """
            + _API_KEYS
            + """
        CREATE TABLE resources (
            name TEXT PRIMARY KEY,
            threshold DOUBLE PRECISION,
            far DOUBLE PRECISION,
            created TEXT NOT NULL
        );
    """
            + _POLICY_TABLES.format(
                id="BIGINT", serial="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", real="DOUBLE PRECISION"
            )
        ],
    ),
    (4, "index change log", [_CHANGE_LOG.format(int="BIGINT"), _postgres_change_triggers, _log_starts_now]),
    (
        5,
        "archive: recordings, unknown voices, turns",
        [
            _ARCHIVE.format(
                id="BIGINT",
                int="BIGINT",
                serial="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                real="DOUBLE PRECISION",
                blob="BYTEA",
            )
        ],
    ),
]

SCHEMA_VERSION = 5
