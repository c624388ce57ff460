"""Turns of a recording: who spoke from when to when, as RTTM files and ``START-END`` spans say,
and the audio of those turns, read from the file a turn at a time (an hour-long recording is
never in memory whole). Enrolling someone from a labelled recording starts here.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from speakerid.base.errors import AudioError, UsageError
from speakerid.voice.audio import MAX_CHANNELS, MAX_INPUT_RATE, MIN_INPUT_RATE

SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")
TURN_CLIP = 4.0  # seconds: turns are joined in order into clips of about this much audio


def read_rttm(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """File id -> turns ``(start, end, label)`` from ``SPEAKER`` lines."""
    turns: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0] != "SPEAKER":
            continue
        try:
            start, duration = float(parts[3]), float(parts[4])
            turns[parts[1]].append((start, start + duration, parts[7]))
        except (IndexError, ValueError):
            raise UsageError(f"{path}:{number}: not an RTTM SPEAKER line: {line!r}") from None
    return dict(turns)


def span(text: str) -> tuple[float, float]:
    """``"12.5-18"`` -> ``(12.5, 18.0)``.

    >>> span("6.69-11.2")
    (6.69, 11.2)
    >>> span("9-3")
    Traceback (most recent call last):
    ...
    speakerid.base.errors.UsageError: span '9-3': write START-END in seconds, START before END
    """
    found = SPAN.match(str(text))
    if not found or float(found[1]) >= float(found[2]):
        raise UsageError(f"span {text!r}: write START-END in seconds, START before END")
    return float(found[1]), float(found[2])


def labelled_turns(rttm: Path, recording: str | os.PathLike, label: str) -> list[tuple[float, float]]:
    """The turns ``label`` speaks in ``recording`` (the RTTM's file id is the recording's name
    without extension; an RTTM of one recording may name it anything)."""
    turns = read_rttm(rttm)
    stem = Path(os.fsdecode(recording)).stem
    mine = turns.get(stem) or (next(iter(turns.values())) if len(turns) == 1 else None)
    if mine is None:
        raise UsageError(f"{rttm}: no turns for {stem} (it has {', '.join(sorted(turns)) or 'none'})")
    found = [(a, b) for a, b, who in mine if who == label]
    if not found:
        labels = sorted({who for _, _, who in mine})
        raise UsageError(f"{rttm}: no turns labelled {label!r} in {stem} (labels: {', '.join(labels)})")
    return found


def turn_audio(recording: str | os.PathLike, spans: list[tuple[float, float]]) -> list[tuple[np.ndarray, int]]:
    """Each span's samples as ``(samples, rate)``, read from the file a span at a time."""
    name = os.fsdecode(recording)
    try:
        info = sf.info(name)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(name, f"not a readable audio file ({getattr(exc, 'error_string', None) or exc})") from None
    if not MIN_INPUT_RATE <= info.samplerate <= MAX_INPUT_RATE or not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(name, f"{info.samplerate} Hz, {info.channels} channels: not a recording this can read")
    out = []
    for start, end in spans:
        if start >= info.duration:
            raise UsageError(
                f"{name}: the span {start:g}-{end:g} s starts after the recording ends ({info.duration:.1f} s)"
            )
        first, last = int(start * info.samplerate), min(int(end * info.samplerate), info.frames)
        samples, rate = sf.read(name, start=first, stop=last, dtype="float32", always_2d=True)
        out.append((samples, rate))
    return out


def grouped(turns: list[tuple[float, float]], seconds: float = TURN_CLIP) -> list[list[tuple[float, float]]]:
    """Turns in order, joined into groups of at least ``seconds`` of audio (the last may be shorter).

    >>> grouped([(0, 1), (2, 4), (5, 9), (10, 10.5)], 3)
    [[(0, 1), (2, 4)], [(5, 9)], [(10, 10.5)]]
    """
    out: list[list[tuple[float, float]]] = [[]]
    for turn in sorted(turns):
        if sum(b - a for a, b in out[-1]) >= seconds:
            out.append([])
        out[-1].append(turn)
    return [g for g in out if g]
