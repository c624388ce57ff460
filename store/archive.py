"""Timelines kept across recordings, the store's :class:`~store.roles.Archive` role over SQL.

Tables (schema 5): ``recordings`` (path, content sha256, duration), ``voices`` (``unknown-N``:
the number is taken once, from a counter in ``meta``, and never reused) and ``turns`` (one
recording's stretch of one enrolled speaker or one voice, with its 192-d vector). Erasure
follows the speakers': ``ON DELETE CASCADE`` from a speaker or a voice to its turns, then the
backend's clean-up of deleted bytes (SQLite ``secure_delete`` and a truncated WAL; PostgreSQL
``VACUUM FULL`` of the erased tables).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .database import Tx
from .errors import InvalidValueError, SpeakerNotFoundError, VoiceNotFoundError
from .migrate import now
from .names import name_key, speaker_name
from .records import ArchivedRecording, ArchivedTurn, ArchivedVoice, NewTurn
from .roles import Archive

if TYPE_CHECKING:
    from .sql_store import SQLStore

PREFIX = "unknown-"
TURN_ROWS = (
    "SELECT r.path, t.start_s, t.end_s, s.name, v.number, t.score FROM turns t "
    "JOIN recordings r ON r.id = t.recording_id "
    "LEFT JOIN speakers s ON s.id = t.speaker_id LEFT JOIN voices v ON v.id = t.voice_id"
)


def voice_number(label: str) -> int:
    """``unknown-17`` -> 17.

    >>> voice_number("unknown-17")
    17
    >>> voice_number("alice")
    Traceback (most recent call last):
    ...
    store.errors.InvalidValueError: 'alice' is not an unknown voice's label (unknown-N)
    """
    number = label[len(PREFIX) :] if isinstance(label, str) and label.startswith(PREFIX) else ""
    if not number.isdigit() or len(number) > 12:
        raise InvalidValueError(f"{label!r} is not an unknown voice's label ({PREFIX}N)")
    return int(number)


def drop_empty_recordings(tx: Tx) -> None:
    """After an erasure: a recording none of whose turns is left goes too (its path may hold a name)."""
    tx.execute("DELETE FROM recordings WHERE NOT EXISTS (SELECT 1 FROM turns t WHERE t.recording_id = recordings.id)")


def _turn(row) -> ArchivedTurn:
    path, start, end, speaker, number, score = row
    return ArchivedTurn(path, float(start), float(end), speaker or f"{PREFIX}{number}", speaker, score)


class SQLArchive(Archive):
    def __init__(self, core: SQLStore):
        self._core, self._db = core, core._db

    # -- writing -----------------------------------------------------------------------------------
    def add_recording(self, path: str, sha256: str, duration: float, turns: Sequence[NewTurn]) -> dict[str, str]:
        with self._db.write() as tx:
            old = tx.value("SELECT id FROM recordings WHERE sha256 = ?", [sha256])
            if old is not None:  # the same audio again: its turns now are these
                tx.execute("DELETE FROM turns WHERE recording_id = ?", [old])
                tx.execute("DELETE FROM recordings WHERE id = ?", [old])
                self._drop_silent_voices(tx)
            tx.execute(
                "INSERT INTO recordings (path, sha256, duration, added) VALUES (?, ?, ?, ?)",
                [path, sha256, float(duration), now()],
            )
            recording = tx.value("SELECT id FROM recordings WHERE sha256 = ?", [sha256])
            speakers, voices, created = {}, {}, {}
            rows = []
            for turn in turns:
                speaker_id = voice_id = None
                if turn.speaker is not None:
                    if turn.speaker not in speakers:
                        speakers[turn.speaker] = tx.value(
                            "SELECT id FROM speakers WHERE name = ?", [speaker_name(turn.speaker)]
                        )
                        if speakers[turn.speaker] is None:
                            raise SpeakerNotFoundError(turn.speaker)
                    speaker_id = speakers[turn.speaker]
                else:
                    if turn.voice not in voices:
                        voices[turn.voice] = self._voice_id(tx, turn.voice, created)
                    voice_id = voices[turn.voice]
                vector = np.ascontiguousarray(turn.vector, dtype=np.float32).tobytes()
                score = None if turn.score is None else float(turn.score)
                rows.append([recording, float(turn.start), float(turn.end), speaker_id, voice_id, vector, score])
            tx.many(
                "INSERT INTO turns (recording_id, start_s, end_s, speaker_id, voice_id, vector, score) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._core._event(tx, "archive", None, recording=sha256[:12], turns=len(rows), new_voices=len(created))
        return created

    def _voice_id(self, tx: Tx, key: str | None, created: dict[str, str]) -> int:
        """An archived ``unknown-N``'s row, or a new voice for any other key."""
        if key is not None and key.startswith(PREFIX) and key[len(PREFIX) :].isdigit():
            found = tx.value("SELECT id FROM voices WHERE number = ?", [voice_number(key)])
            if found is None:
                raise VoiceNotFoundError(key)
            return found
        number = int(tx.value("SELECT value FROM meta WHERE key = 'last_voice'", default=0)) + 1
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_voice', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(number)],
        )
        tx.execute("INSERT INTO voices (number, created) VALUES (?, ?)", [number, now()])
        created[str(key)] = f"{PREFIX}{number}"
        return tx.value("SELECT id FROM voices WHERE number = ?", [number])

    @staticmethod
    def _drop_silent_voices(tx: Tx) -> None:
        tx.execute("DELETE FROM voices WHERE NOT EXISTS (SELECT 1 FROM turns t WHERE t.voice_id = voices.id)")

    def name_voice(self, voice: str, speaker: str) -> int:
        number = voice_number(voice)
        with self._db.write() as tx:
            voice_id = tx.value("SELECT id FROM voices WHERE number = ?", [number])
            if voice_id is None:
                raise VoiceNotFoundError(voice)
            speaker_id = tx.value("SELECT id FROM speakers WHERE name_key = ?", [name_key(speaker_name(speaker))])
            if speaker_id is None:
                raise SpeakerNotFoundError(speaker)
            moved = int(tx.value("SELECT COUNT(*) FROM turns WHERE voice_id = ?", [voice_id]))
            tx.execute("UPDATE turns SET speaker_id = ?, voice_id = NULL WHERE voice_id = ?", [speaker_id, voice_id])
            tx.execute("DELETE FROM voices WHERE id = ?", [voice_id])
            self._core._event(tx, "voice_named", None, voice=voice, turns=moved)
        return moved

    def remove_voice(self, voice: str) -> int:
        number = voice_number(voice)
        with self._db.write() as tx:
            voice_id = tx.value("SELECT id FROM voices WHERE number = ?", [number])
            if voice_id is None:
                raise VoiceNotFoundError(voice)
            erased = int(tx.value("SELECT COUNT(*) FROM turns WHERE voice_id = ?", [voice_id]))
            tx.execute("DELETE FROM turns WHERE voice_id = ?", [voice_id])
            tx.execute("DELETE FROM voices WHERE id = ?", [voice_id])
            drop_empty_recordings(tx)
            self._core._event(tx, "voice_removed", None, voice=voice, turns=erased)
        self._core._erase_leftovers()
        return erased

    # -- reading -----------------------------------------------------------------------------------
    def voice_vectors(self) -> tuple[list[str], np.ndarray]:
        with self._db.read() as tx:
            rows = tx.all(
                "SELECT v.number, t.vector, t.end_s - t.start_s FROM turns t JOIN voices v ON v.id = t.voice_id "
                "ORDER BY v.number, t.id"
            )
        sums: dict[int, np.ndarray] = {}
        for number, vector, seconds in rows:
            v = np.frombuffer(bytes(vector), dtype=np.float32) * float(seconds)
            sums[number] = sums[number] + v if number in sums else v
        labels = [f"{PREFIX}{n}" for n in sums]
        if not sums:
            return labels, np.zeros((0, 0), dtype=np.float32)
        matrix = np.stack(list(sums.values()))
        return labels, (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)

    def voices(self, examples: int = 3) -> list[ArchivedVoice]:
        with self._db.read() as tx:
            rows = tx.all(TURN_ROWS + " WHERE t.voice_id IS NOT NULL ORDER BY v.number, r.id, t.start_s")
        by_voice: dict[str, list[ArchivedTurn]] = defaultdict(list)
        for row in rows:
            turn = _turn(row)
            by_voice[turn.label].append(turn)
        out = [
            ArchivedVoice(
                label,
                sum(t.end - t.start for t in turns),
                len({t.recording for t in turns}),
                len(turns),
                sorted(turns, key=lambda t: t.start - t.end)[:examples],
            )
            for label, turns in by_voice.items()
        ]
        return sorted(out, key=lambda v: (-v.seconds, voice_number(v.label)))

    def turns(self, *, recording: str | None = None, voice: str | None = None) -> list[ArchivedTurn]:
        where, params = [], []
        if recording is not None:
            where.append("(r.path = ? OR r.sha256 = ?)")
            params += [recording, recording]
        if voice is not None:
            where.append("v.number = ?")
            params.append(voice_number(voice))
        sql = TURN_ROWS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id, t.start_s, t.id"
        with self._db.read() as tx:
            return [_turn(row) for row in tx.all(sql, params)]

    def recordings(self) -> list[ArchivedRecording]:
        with self._db.read() as tx:
            rows = tx.all("SELECT path, sha256, duration, added FROM recordings ORDER BY id")
        return [ArchivedRecording(p, s, float(d), a) for p, s, d, a in rows]
