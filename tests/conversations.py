"""Conversations built from mini-voxceleb1 with exact boundaries, for the timeline's tests and benchmark;
the shared real two-person recording; a meeting-room microphone simulated.

Each turn is a split-2/3 clip (never an enrollment clip) trimmed to its speech (first to last
detected speech), so the reference turn is exactly where the voice is. Between turns: a pause, no
pause (back to back), or an overlap (the next voice starts before the last ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import SHARED, clips_of

RATE = 16_000
REAL = SHARED / "data" / "conversations"  # the real two-person recording, sample.wav + sample.rttm


@dataclass(frozen=True)
class Turn:
    speaker: str
    start: float
    end: float


PAUSE = 0.5  # seconds: a pause this long inside a clip ends a turn (as the shared RTTM marks turns)


def trimmed(path: Path, part: int = 0, parts: int = 1) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The speech of a clip (first to last detected speech), or one of ``parts`` equal pieces of it,
    with its turns in seconds from its start: the speech detected in the clean clip, pauses under
    :data:`PAUSE` bridged."""
    from speakerid.voice.audio import load_audio
    from speakerid.voice.vad import extract_speech

    audio = load_audio(path)
    regions = extract_speech(audio, min_speech=None).regions
    speech = audio.samples[regions[0][0] : regions[-1][1]]
    size = len(speech) // parts
    lo, hi = part * size, (part + 1) * size
    turns: list[list[float]] = []
    for a, b in regions:
        a, b = max(a - regions[0][0], lo) - lo, min(b - regions[0][0], hi) - lo
        if b <= a:
            continue
        if turns and a / RATE - turns[-1][1] < PAUSE:
            turns[-1][1] = b / RATE
        else:
            turns.append([a / RATE, b / RATE])
    return speech[lo:hi], [(a, b) for a, b in turns]


def build(turns: list[tuple[str, float]], *, seed: int = 0) -> tuple[np.ndarray, list[Turn]]:
    """``turns``: (speaker, gap before the turn in seconds; negative overlaps the previous turn).
    Each speaker's turns take their split-3 then split-2 clips in order, halves of them when needed."""
    pool: dict[str, list[np.ndarray]] = {}
    for speaker in {s for s, _ in turns}:
        needed = sum(1 for s, _ in turns if s == speaker)
        clips = clips_of(speaker, 3) + clips_of(speaker, 2)
        pieces = [trimmed(c) for c in clips]
        if len(pieces) < needed:  # halves of the clips, each with its own turns
            pieces = [trimmed(c, k, 2) for c in clips for k in range(2)]
        pool[speaker] = pieces[:needed]
    audio = np.zeros(0, dtype=np.float32)
    reference: list[Turn] = []
    cursor = 0.5
    for speaker, gap in turns:
        piece, spoken = pool[speaker].pop(0)
        start = max(cursor + gap, 0.0)
        end = start + len(piece) / RATE
        needed = int(end * RATE) + RATE // 2
        if len(audio) < needed:
            audio = np.concatenate([audio, np.zeros(needed - len(audio), dtype=np.float32)])
        a = int(round(start * RATE))
        audio[a : a + len(piece)] += piece
        reference += [Turn(speaker, a / RATE + s, a / RATE + e) for s, e in spoken]
        cursor = max(cursor, end)
    return np.clip(audio, -1, 1), reference


SCENARIOS: dict[str, list[tuple[str, float]]] = {
    "two, with pauses": [("id90001", 0), ("id90002", 0.8), ("id90001", 0.6), ("id90002", 1.0), ("id90001", 0.5)],
    "three, back to back": [
        ("id90003", 0),
        ("id90101", 0),
        ("id90004", 0),
        ("id90003", 0),
        ("id90101", 0),
        ("id90004", 0),
    ],
    "four and a stranger": [
        ("id90005", 0),
        ("id90102", 0.7),
        ("id90104", 0.5),
        ("id90006", 0.4),
        ("id90005", 0.6),
        ("id90104", 0.5),
        ("id90102", 0.3),
    ],
    "a short overlap": [("id90007", 0), ("id90008", -0.5), ("id90007", 0.6), ("id90010", 0.5), ("id90008", -0.4)],
}
STRANGERS = {"four and a stranger": "id90104", "a short overlap": "id90010"}


def enrolled(scenario: str) -> list[str]:
    return sorted({s for s, _ in SCENARIOS[scenario]} - {STRANGERS.get(scenario)})


def as_annotation(turns, uri: str):
    """A pyannote.core Annotation: reference turns, or our segments (speaker None -> its label)."""
    from pyannote.core import Annotation, Segment

    out = Annotation(uri=uri)
    for i, t in enumerate(turns):
        label = getattr(t, "label", None) or t.speaker
        out[Segment(t.start, t.end), i] = label
    return out


def real_recording() -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """The shared real recording, its rate, and its reference turns ``(start, end, speaker)``."""
    import soundfile as sf

    from speakerid.flows.turns import read_rttm

    audio, rate = sf.read(REAL / "sample.wav", dtype="float32")
    return audio, rate, read_rttm(REAL / "sample.rttm")["sample"]


def turns_of(audio: np.ndarray, rate: int, reference, person: str, before: float) -> np.ndarray:
    """``person``'s reference turns that end by ``before`` s, end to end: their enrollment audio
    when a recording is all there is."""
    return np.concatenate(
        [audio[int(a * rate) : int(b * rate)] for a, b, who in reference if who == person and b <= before]
    )


def far_field(
    audio: np.ndarray,
    rate: int,
    *,
    direct: float | None = 3.0,
    rt60: float = 0.5,
    snr: float | None = 15.0,
    level: float = -41.0,
    seed: int = 0,
) -> np.ndarray:
    """``audio`` as a meeting-room microphone hears it: reverberant (an exponentially decaying
    noise tail of ``rt60`` s, direct path of amplitude ``direct`` against a unit-energy tail;
    ``None``: no room), low-frequency noise (AR(1), coefficient 0.9: fans and air conditioning)
    ``snr`` dB under the speech (``None``: none), the speech at ``level`` dBFS.

    >>> x = np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3
    >>> y = far_field(x, 16000)
    >>> round(float(20 * np.log10(np.sqrt(np.mean(y[np.abs(x) > 0.01] ** 2)))), 1)
    -41.0
    >>> round(direct_to_reverberant(3.0, 0.5, 16000), 1), round(direct_to_reverberant(24.0, 0.5, 16000), 1)
    (-18.0, 0.0)
    """
    from scipy.signal import fftconvolve, lfilter

    rng = np.random.default_rng(seed)
    wet = audio.astype(np.float64)
    if direct is not None:
        room = _room(direct, rt60, rate, rng)
        wet = fftconvolve(audio, room / np.sqrt(np.sum(room**2)))[: len(audio)]
    speech = np.abs(audio) > 0.01
    out = wet
    if snr is not None:
        noise = lfilter([1], [1, -0.9], rng.standard_normal(len(audio)))
        noise *= np.sqrt(np.mean(wet[speech] ** 2) / np.mean(noise**2)) * 10 ** (-snr / 20)
        out = wet + noise
    out = out * 10 ** ((level - 20 * np.log10(np.sqrt(np.mean(out[speech] ** 2)))) / 20)
    return out.astype(np.float32)


def direct_to_reverberant(direct: float, rt60: float, rate: int, seed: int = 0) -> float:
    """The direct-to-reverberant ratio, in dB, of :func:`far_field`'s room."""
    room = _room(direct, rt60, rate, np.random.default_rng(seed))
    return float(10 * np.log10(room[0] ** 2 / np.sum(room[1:] ** 2)))


def _room(direct: float, rt60: float, rate: int, rng) -> np.ndarray:
    t = np.arange(int(rt60 * rate)) / rate
    room = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    room[0] = direct
    return room
