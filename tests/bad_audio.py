"""A corpus of bad inputs, made from scratch by the tests: (path, fragment the error must contain)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16_000


def make_bad_inputs(folder: Path, speech: np.ndarray) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[Path, str]] = []

    def add(name: str, reason: str) -> Path:
        path = folder / name
        cases.append((path, reason))
        return path

    add("empty.wav", "empty file").write_bytes(b"")
    with wave.open(str(add("header-only.wav", "no audio")), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
    add("notes.wav", "not a readable audio file").write_text("this is not audio\n" * 100)
    add("data.wav", "not a readable audio file").write_text('{"json": true}')
    add("image.wav", "not a readable audio file").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(500))
    sf.write(add("nan.wav", "NaN or infinite"), np.full(RATE, np.nan, dtype=np.float32), RATE, subtype="FLOAT")
    inf = speech[: 2 * RATE].copy()
    inf[100] = np.inf
    sf.write(add("inf.wav", "NaN or infinite"), inf, RATE, subtype="FLOAT")
    sf.write(add("1hz.wav", "below the supported minimum"), np.zeros(10, dtype=np.float32), 1)
    sf.write(add("384k.wav", "above the supported maximum"), np.zeros(384_000, dtype=np.float32), 384_000)
    sf.write(add("33ch.wav", "33 channels"), np.zeros((1000, 33), dtype=np.float32), RATE)
    sf.write(add("silence.wav", "no speech found"), np.zeros(4 * RATE, dtype=np.float32), RATE)
    t = np.arange(4 * RATE) / RATE
    sf.write(add("tone.wav", "no speech found"), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE)
    sf.write(add("dc.wav", "no speech found"), np.full(4 * RATE, 0.3, dtype=np.float32), RATE)
    sf.write(add("noise.wav", "no speech found"),
             (0.3 * np.random.default_rng(0).standard_normal(4 * RATE)).astype(np.float32), RATE)
    sf.write(add("short.wav", "need at least 0.5 s of speech"), speech[RATE: RATE + int(0.4 * RATE)], RATE)
    (folder / "folder.wav").mkdir()
    cases.append((folder / "folder.wav", "is a folder"))
    cases.append((folder / "missing.wav", "file not found"))
    (folder / "dangling.wav").symlink_to(folder / "nowhere.wav")
    cases.append((folder / "dangling.wav", "broken symbolic link"))
    return cases
