"""Speakers and their clip embeddings, the store's :class:`~store.roles.Voiceprints` role over SQL.

The SQL here runs unchanged on SQLite and PostgreSQL. Every write goes through the store's
``_changing()``, which orders the locks, moves the generation and brings the derived index up
to date after the commit.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .archive import drop_empty_recordings
from .audit import forget_name
from .database import Tx
from .errors import DuplicateClipError, InvalidValueError, SpeakerExistsError, SpeakerNotFoundError
from .migrate import now
from .names import name_key, speaker_name
from .records import Changes, Counts, Hit, NewEmbedding, Speaker
from .roles import Voiceprints

if TYPE_CHECKING:
    from .derived_index import DerivedIndex
    from .sql_store import SQLStore

MODES = ("new", "append", "replace")
CHUNK = 5_000  # ids per IN (...) list
EMBEDDING_ROWS = "SELECT e.id, e.vector, s.name FROM embeddings e JOIN speakers s ON s.id = e.speaker_id"


def embedding_arrays(rows: list, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(ids, vectors, speaker names)`` from rows of :data:`EMBEDDING_ROWS`, in their order."""
    vectors = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.float32).reshape(len(rows), dim)
    return np.array([r[0] for r in rows], dtype=np.int64), vectors, [r[2] for r in rows]


class SQLVoiceprints(Voiceprints):
    def __init__(self, core: SQLStore, index: DerivedIndex):
        self._core, self._db, self._index = core, core._db, index

    # -- the model binding and the generation ------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._core.generation

    @property
    def model(self) -> str | None:
        return self._core._meta("model")

    @property
    def dimension(self) -> int | None:
        with self._db.read() as tx:
            return self._core._dimension(tx)

    def check_model(self, model: str, dimension: int | None) -> None:
        with self._db.read() as tx:
            self._core._check_model(tx, model, dimension)

    # -- writing -----------------------------------------------------------------------------------

    def add_speaker(
        self,
        name: str,
        embeddings: Sequence[NewEmbedding],
        *,
        model: str,
        mode: str = "new",
        metadata: dict | None = None,
    ) -> Speaker:
        if mode not in MODES:
            raise InvalidValueError(f"mode must be new, append or replace, not {mode!r}")
        name = speaker_name(name)
        vectors = stack(name, embeddings)
        with self._core._changing(erases=mode == "replace") as tx:
            self._core._bind(tx, model, vectors.shape[1])
            stamp = now()
            row = self._speaker_row(tx, name)
            if row is not None and mode == "new":
                raise SpeakerExistsError(name, row[1])
            if row is None:
                speaker_id = tx.value(
                    "INSERT INTO speakers (name, name_key, created, updated, metadata) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING id",
                    [name, name_key(name), stamp, stamp, metadata_json(metadata or {})],
                )
            else:
                speaker_id, name = row[0], row[1]
                merged = {} if mode == "replace" else json.loads(row[2])
                merged.update(metadata or {})
                tx.execute(
                    "UPDATE speakers SET updated = ?, metadata = ? WHERE id = ?",
                    [stamp, metadata_json(merged), speaker_id],
                )
                if mode == "replace":
                    tx.execute("DELETE FROM embeddings WHERE speaker_id = ?", [speaker_id])
                else:
                    self._refuse_enrolled_clips(tx, speaker_id, name, embeddings)
            self._insert_embeddings(tx, [(speaker_id, vectors, embeddings)], model, stamp)
            self._core._event(
                tx, "replace" if (row is not None and mode == "replace") else "enroll", name, clips=len(embeddings)
            )
        return self.speaker(name)

    def import_speakers(self, speakers: dict[str, Sequence[NewEmbedding]], *, model: str) -> int:
        if not speakers:
            return 0
        named = {speaker_name(name): embeddings for name, embeddings in speakers.items()}
        keys = [name_key(n) for n in named]
        if len(set(keys)) != len(keys):
            twin = next(n for n, k in zip(named, keys) if keys.count(k) > 1)
            raise SpeakerExistsError(twin)
        stacked = {name: stack(name, embeddings) for name, embeddings in named.items()}
        with self._core._changing() as tx:
            for vectors in stacked.values():
                self._core._bind(tx, model, vectors.shape[1])
            taken = self._ids_by_key(tx, keys)
            if taken:
                raise SpeakerExistsError(next(n for n, k in zip(named, keys) if k in taken))
            stamp = now()
            tx.many(
                "INSERT INTO speakers (name, name_key, created, updated, metadata) VALUES (?, ?, ?, ?, '{}')",
                [(name, key, stamp, stamp) for name, key in zip(named, keys)],
            )
            ids = self._ids_by_key(tx, keys)
            self._insert_embeddings(
                tx, [(ids[key], stacked[name], named[name]) for name, key in zip(named, keys)], model, stamp
            )
            self._core._event(tx, "import", None, speakers=len(named))
        return len(named)

    def remove_speaker(self, name: str) -> None:
        name = speaker_name(name)
        with self._core._changing(erases=True) as tx:
            row = self._speaker_row(tx, name)
            if row is None:
                raise SpeakerNotFoundError(name)
            # Grants, group memberships and archived turns go with the speaker row (ON DELETE CASCADE).
            tx.execute("DELETE FROM embeddings WHERE speaker_id = ?", [row[0]])
            tx.execute("DELETE FROM speakers WHERE id = ?", [row[0]])  # archived turns go too (cascade)
            drop_empty_recordings(tx)
            alias = f"erased-{secrets.token_hex(6)}"  # random: nothing in the store leads back to the name
            forget_name(tx, row[1], alias)
            self._core._event(tx, "remove", alias)

    # -- reading ---------------------------------------------------------------------------------
    def speaker(self, name: str) -> Speaker:
        name = speaker_name(name)
        with self._db.read() as tx:
            row = self._speaker_row(tx, name)
            found = self._speakers(tx, "WHERE s.id = ?", [row[0]]) if row else []
        if not found:
            raise SpeakerNotFoundError(name)
        return found[0]

    def speakers(self) -> list[Speaker]:
        with self._db.read() as tx:
            return self._speakers(tx, "", [])

    def __contains__(self, name: object) -> bool:
        try:
            name = speaker_name(name)
        except InvalidValueError:
            return False
        with self._db.read() as tx:
            return self._speaker_row(tx, name) is not None

    def display_name(self, name: str) -> str:
        """The name as enrolled (``ALICE`` -> ``alice``); :class:`SpeakerNotFoundError` if none."""
        name = speaker_name(name)
        with self._db.read() as tx:
            row = self._speaker_row(tx, name)
        if row is None:
            raise SpeakerNotFoundError(name)
        return row[1]

    def clip_digests(self, name: str) -> set[str]:
        name = speaker_name(name)
        with self._db.read() as tx:
            row = self._speaker_row(tx, name)
            if row is None:
                return set()
            rows = tx.all(
                "SELECT clip_sha256 FROM embeddings WHERE speaker_id = ? AND clip_sha256 IS NOT NULL", [row[0]]
            )
        return {r[0] for r in rows}

    def vectors(self, name: str | Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        with self._db.read() as tx:
            if name is None:
                rows = tx.all(EMBEDDING_ROWS + " ORDER BY e.id", vectors=True)
            elif isinstance(name, str):
                row = self._speaker_row(tx, speaker_name(name))
                rows = tx.all(EMBEDDING_ROWS + " WHERE s.id = ? ORDER BY e.id", [row[0]], vectors=True) if row else []
            else:
                names = list(name)
                rows = []
                for start in range(0, len(names), CHUNK):
                    chunk = names[start : start + CHUNK]
                    # the speakers' ids first: PostgreSQL's planner, without statistics (after a bulk
                    # import), scanned every embedding for the join (18 ms at 10^5 instead of 1)
                    rows += tx.all(
                        EMBEDDING_ROWS + " WHERE e.speaker_id IN (SELECT id FROM speakers WHERE name IN "
                        f"({','.join('?' * len(chunk))}))",
                        chunk,
                        vectors=True,
                    )
                rows.sort(key=lambda r: r[0])
            dim = self._core._dimension(tx) or 0
        return embedding_arrays(rows, dim)

    def counts(self) -> Counts:
        with self._db.read() as tx:
            speakers, clips = tx.one("SELECT COUNT(DISTINCT speaker_id), COUNT(*) FROM embeddings")
            return Counts(self._core._generation_in(tx), int(speakers), int(clips))

    def changes(self, since: int) -> Changes | None:
        return self._index.changes(since)

    def search(self, query: np.ndarray, k: int = 10) -> list[Hit]:
        return self._index.search(query, k)

    def search_many(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        return self._index.search_many(queries, k)

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _speaker_row(tx: Tx, name: str) -> tuple | None:
        """``(id, name, metadata)``: the exact name first, else the name that means the same."""
        return tx.one(
            "SELECT id, name, metadata FROM speakers WHERE name = ? OR name_key = ? "
            "ORDER BY CASE WHEN name = ? THEN 0 ELSE 1 END LIMIT 1",
            [name, name_key(name), name],
        )

    @staticmethod
    def _ids_by_key(tx: Tx, keys: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                {k: i for i, k in tx.all(f"SELECT id, name_key FROM speakers WHERE name_key IN ({marks})", chunk)}
            )
        return found

    @staticmethod
    def _refuse_enrolled_clips(tx: Tx, speaker_id: int, name: str, embeddings: Sequence[NewEmbedding]) -> None:
        """Inside the write: a recording already enrolled for this speaker is refused, however many
        processes append it at once."""
        digests = [e.clip_sha256 for e in embeddings if e.clip_sha256]
        if not digests:
            return
        marks = ",".join("?" * len(digests))
        twin = tx.value(
            f"SELECT clip_sha256 FROM embeddings WHERE speaker_id = ? AND clip_sha256 IN ({marks}) LIMIT 1",
            [speaker_id, *digests],
        )
        if twin:
            raise DuplicateClipError(f"this recording (sha256 {twin[:12]}...) is already enrolled for {name}")

    @staticmethod
    def _insert_embeddings(
        tx: Tx, groups: list[tuple[int, np.ndarray, Sequence[NewEmbedding]]], model: str, stamp: str
    ) -> None:
        tx.many(
            "INSERT INTO embeddings (speaker_id, vector, dimension, model, clip_sha256, speech_seconds, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    speaker_id,
                    vec.tobytes(),
                    vectors.shape[1],
                    model,
                    e.clip_sha256,
                    None if e.speech_seconds is None else float(e.speech_seconds),
                    stamp,
                )
                for speaker_id, vectors, embeddings in groups
                for vec, e in zip(vectors, embeddings)
            ],
        )

    @staticmethod
    def _speakers(tx: Tx, where: str, params: list) -> list[Speaker]:
        sql = f"""SELECT s.name, s.created, s.updated, s.metadata, COUNT(e.id), COALESCE(SUM(e.speech_seconds), 0),
                         MIN(e.model)
                  FROM speakers s LEFT JOIN embeddings e ON e.speaker_id = s.id {where}
                  GROUP BY s.id, s.name, s.created, s.updated, s.metadata, s.name_key ORDER BY s.name_key, s.name"""
        return [
            Speaker(
                name=r[0],
                clips=int(r[4]),
                speech_seconds=float(r[5]),
                created=r[1],
                updated=r[2],
                metadata=json.loads(r[3]),
                model=r[6],
            )
            for r in tx.all(sql, params)
        ]


def metadata_json(metadata: object) -> str:
    """A speaker's metadata as stored: a JSON object of finite numbers, text, lists and objects.

    >>> metadata_json({"team": "lab", "floor": 3})
    '{"team": "lab", "floor": 3}'
    >>> metadata_json({"x": float("nan")})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    store.errors.InvalidValueError: metadata must be a JSON object of finite numbers, text, lists and objects (...)
    """
    if not isinstance(metadata, dict):
        raise InvalidValueError(f"metadata must be an object of names and values, not {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidValueError(
            f"metadata must be a JSON object of finite numbers, text, lists and objects ({exc})"
        ) from None
    if len(text) > 64 * 1024:
        raise InvalidValueError(f"metadata of {len(text)} characters; the limit is 65536")
    return text


def stack(name: str, embeddings: Sequence[NewEmbedding]) -> np.ndarray:
    """A speaker's embeddings as one float32 matrix; refuse none at all, or NaN/inf values."""
    if not embeddings:
        raise InvalidValueError(f"no embeddings to enroll for {name!r}")
    try:
        vectors = np.stack([np.asarray(e.vector, dtype=np.float32).reshape(-1) for e in embeddings])
    except ValueError as exc:
        raise InvalidValueError(f"embeddings for {name!r} are not vectors of one dimension ({exc})") from None
    if vectors.shape[1] == 0 or not np.isfinite(vectors).all():
        raise InvalidValueError(f"embeddings for {name!r} are empty or contain NaN or infinite values")
    return vectors
