"""A resumable cache of clip embeddings for evaluation runs, keyed by file and model (the caller
includes the precision in the model key, so fp32 and bf16 embeddings are never mixed). It lives
in ``store`` because all SQL does; it is a separate SQLite file, not part of any voiceprint store.

SQLite, committed every few hundred clips, so an interrupted run resumes where it stopped and a
second run only reads vectors back. A changed file (size or mtime) is embedded again.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np


class EmbeddingCache:
    def __init__(self, path: Path, model: str):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.model = model
        self.conn = sqlite3.connect(path, timeout=60)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("""CREATE TABLE IF NOT EXISTS clips (
            model TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            vector BLOB NOT NULL, seconds REAL NOT NULL, speech_seconds REAL NOT NULL,
            PRIMARY KEY (model, path))""")
        self._pending = 0

    def get(self, path: Path) -> tuple[np.ndarray, float, float] | None:
        st = os.stat(path)
        row = self.conn.execute(
            "SELECT size, mtime_ns, vector, seconds, speech_seconds FROM clips WHERE model = ? AND path = ?",
            (self.model, str(path)),
        ).fetchone()
        if row is None or row[0] != st.st_size or row[1] != st.st_mtime_ns:
            return None
        return np.frombuffer(row[2], dtype=np.float32).copy(), row[3], row[4]

    def put(self, path: Path, vector: np.ndarray, seconds: float, speech_seconds: float) -> None:
        st = os.stat(path)
        self.conn.execute(
            "INSERT OR REPLACE INTO clips VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.model,
                str(path),
                st.st_size,
                st.st_mtime_ns,
                np.asarray(vector, dtype=np.float32).tobytes(),
                seconds,
                speech_seconds,
            ),
        )
        self._pending += 1
        if self._pending >= 200:
            self.commit()

    def commit(self) -> None:
        self.conn.commit()
        self._pending = 0

    def close(self) -> None:
        self.commit()
        self.conn.close()
