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
from speakerid.base.text import printable
from speakerid.voice.audio import MAX_CHANNELS, MAX_INPUT_RATE, MIN_INPUT_RATE
from speakerid.voice.vad import audible

SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")
TURN_CLIP = 4.0  # seconds: turns are joined in order into clips of about this much audio


def read_rttm(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """File id -> turns ``(start, end, label)`` from an RTTM file's ``SPEAKER`` lines."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_rttm(text, str(path))


def parse_rttm(text: str, source: str = "rttm") -> dict[str, list[tuple[float, float, str]]]:
    """File id -> turns ``(start, end, label)`` from RTTM text (``source`` names it in errors).

    >>> parse_rttm("SPEAKER sample 1 6.69 4.51 <NA> <NA> speaker91 <NA> <NA>")
    {'sample': [(6.69, 11.2, 'speaker91')]}
    """
    turns: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] != "SPEAKER":
            continue
        try:
            start, duration = float(parts[3]), float(parts[4])
            if not (np.isfinite(start) and np.isfinite(duration)) or start < 0 or duration <= 0:
                raise ValueError
            turns[parts[1]].append((start, round(start + duration, 6), parts[7]))
        except (IndexError, ValueError):
            raise UsageError(f"{source}:{number}: not an RTTM SPEAKER line: {printable(line)}") from None
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


def as_span(item: object) -> tuple[float, float]:
    """A span from ``"START-END"`` or a ``(start, end)`` pair of seconds, checked.

    >>> as_span((1, 2.5)), as_span("3-4")
    ((1.0, 2.5), (3.0, 4.0))
    >>> as_span((2, float("nan")))
    Traceback (most recent call last):
    ...
    speakerid.base.errors.UsageError: span (2, nan): give START-END in seconds, START before END
    """
    if isinstance(item, str):
        return span(item)
    try:
        start, end = (float(x) for x in item)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        start = end = float("nan")
    if not (np.isfinite(start) and np.isfinite(end)) or not 0 <= start < end:
        raise UsageError(f"span {printable(repr(item))}: give START-END in seconds, START before END")
    return start, end


def turns_of(turns: dict, stem: str, label: str, source: str) -> list[tuple[float, float]]:
    """``label``'s turns in the recording ``stem`` names (the RTTM's file id is the recording's name
    without extension; an RTTM of one recording may name it anything)."""
    mine = turns.get(stem) or (next(iter(turns.values())) if len(turns) == 1 else None)
    if mine is None:
        raise UsageError(f"{source}: no turns for {stem} (it has {', '.join(sorted(turns)) or 'none'})")
    found = [(a, b) for a, b, who in mine if who == label]
    if not found:
        labels = sorted({who for _, _, who in mine})
        raise UsageError(f"{source}: no turns labelled {printable(label)} in {stem} (labels: {', '.join(labels)})")
    return found


def turn_audio(
    recording: str | os.PathLike | tuple[np.ndarray, int], spans: list[tuple[float, float]]
) -> list[tuple[np.ndarray, int]]:
    """Each span's samples as ``(samples, rate)``: read from the file a span at a time, or cut
    from a ``(samples, rate)`` pair (an upload, already decoded)."""
    if isinstance(recording, tuple):
        samples, rate = recording
        name, duration, frames = "the recording", len(samples) / rate, len(samples)
    else:
        name = os.fsdecode(recording)
        try:
            info = sf.info(name)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            reason = getattr(exc, "error_string", None) or exc
            raise AudioError(name, f"not a readable audio file ({reason})") from None
        if not MIN_INPUT_RATE <= info.samplerate <= MAX_INPUT_RATE or not 1 <= info.channels <= MAX_CHANNELS:
            raise AudioError(name, f"{info.samplerate} Hz, {info.channels} channels: not a recording this can read")
        rate, duration, frames = info.samplerate, info.duration, info.frames
    out = []
    for start, end in spans:
        if start >= duration:
            raise UsageError(f"{name}: the span {start:g}-{end:g} s starts after the recording ends ({duration:.1f} s)")
        first, last = int(start * rate), min(int(end * rate), frames)
        if isinstance(recording, tuple):
            out.append((np.asarray(samples[first:last], dtype=np.float32).reshape(-1, 1), rate))
        else:
            part, _ = sf.read(name, start=first, stop=last, dtype="float32", always_2d=True)
            out.append((part, rate))
    return out


def grouped(turns: list[tuple[float, float]], seconds: float = TURN_CLIP) -> list[list[tuple[float, float]]]:
    """Turns in order, joined into groups of at least ``seconds`` of audio; a last group under half
    of that joins the one before (a 2 s far-field remnant can hold too little speech to stand alone).

    >>> grouped([(0, 1), (2, 4), (5, 9), (10, 11.5)], 3)
    [[(0, 1), (2, 4)], [(5, 9)], [(10, 11.5)]]
    >>> grouped([(0, 1), (2, 4), (5, 9), (10, 10.5)], 3)
    [[(0, 1), (2, 4)], [(5, 9), (10, 10.5)]]
    """
    out: list[list[tuple[float, float]]] = [[]]
    for turn in sorted(turns):
        if sum(b - a for a, b in out[-1]) >= seconds:
            out.append([])
        out[-1].append(turn)
    if len(out) > 1 and sum(b - a for a, b in out[-1]) < seconds / 2:
        out[-2].extend(out.pop())
    return [g for g in out if g]


def turn_clips(
    recording: str | os.PathLike | tuple[np.ndarray, int], turns: list[tuple[float, float]]
) -> tuple[list, list[str]]:
    """Clips to enroll from: ``turns`` joined in order into clips of about :data:`TURN_CLIP` s, each
    raised to the level the timeline hears the recording at (a far-field meeting's quieter voices
    sit 10 dB under the enrollment gate's floor as recorded; the voiceprint does not depend on the
    level), with labels ``recording@START-END``."""
    clips, labels = [], []
    for group in grouped(turns, TURN_CLIP):
        parts = turn_audio(recording, group)
        clips.append((audible(np.concatenate([p for p, _ in parts])), parts[0][1]))
        where = "recording" if isinstance(recording, tuple) else os.fsdecode(recording)
        labels.append(f"{where}@{group[0][0]:.2f}-{group[-1][1]:.2f}")
    return clips, labels
