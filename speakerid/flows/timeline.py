"""Who spoke when, by name: enrolled speakers found through a multi-speaker recording.

1. **Speech**: silero-vad on the recording raised to a normal level first (far-field meeting audio
   at -41 dBFS otherwise goes unheard, see :func:`speakerid.voice.vad.audible`), at the timeline's
   threshold :data:`VAD_THRESHOLD`.
2. **Windows**: 1.5 s windows every 0.5 s over the speech, each embedded on its own.
3. **Voices**: each window labelled with an enrolled name or ``unknown-N`` (``N`` by first
   appearance), in two Viterbi passes with strangers checked in between
   (:mod:`speakerid.flows.window_labels`).
4. **Turns**: each 10 ms frame of speech takes the label of the nearest window, a change placed
   where the two voices' scores cross; turns shorter than ``min_turn`` between two others are
   absorbed by a neighbour. Overlapped speech gets one label (labelling both where the windows
   sound mixed added more false alarm than it removed missed speech, benchmarks/README.md).

The recording is read a block at a time, so memory grows with the number of windows (a few kB a
second), not with the audio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from speakerid.base.errors import AudioError
from speakerid.decide import score_calibration
from speakerid.decide.scoring import centroid
from speakerid.flows.window_labels import label_windows
from speakerid.voice.audio import SAMPLE_RATE, Audio, AudioInput, stream_audio
from speakerid.voice.vad import SpeechDetector

WINDOW = 1.5  # seconds embedded at a time
HOP = 0.5
FRAME = 0.01
VAD_THRESHOLD = 0.35  # lower than identify's 0.5: on simulated far-field audio 85 % of speech found, not 70 %
DEFAULT_MIN_TURN = 0.5
BLOCK = 60.0  # seconds of audio decoded at a time
BATCH = 16  # windows embedded in one pass
GAP_FILL = 0.5  # seconds: a pause this short inside one voice's speech stays part of the turn


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    speaker: str | None  # an enrolled name, or None for a voice nobody enrolled
    label: str  # the name, or unknown-N
    score: float | None  # the turn's score against its profile (or the best one, for a stranger)
    confidence: float | None = None  # the probability that the label (a name, or a stranger) is right
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)  # the turn's voice (not shown)

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "speaker": self.speaker,
            "label": self.label,
            "score": None if self.score is None else round(self.score, 4),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
        }


@dataclass
class Timeline:
    segments: list[Segment]
    model: str
    duration: float
    threshold: float

    @property
    def speakers(self) -> dict[str, float]:
        """Seconds of speech per label, in order of first appearance."""
        spoken: dict[str, float] = {}
        for s in self.segments:
            spoken[s.label] = spoken.get(s.label, 0.0) + s.end - s.start
        return spoken

    def to_dict(self) -> dict:
        return {
            "segments": [s.to_dict() for s in self.segments],
            "speakers": {k: round(v, 2) for k, v in self.speakers.items()},
            "model": self.model,
            "duration": round(self.duration, 3),
            "threshold": self.threshold,
        }

    def to_rttm(self, file_id: str) -> str:
        """The standard RTTM lines: ``SPEAKER <file> 1 <start> <dur> <NA> <NA> <label> <NA> <NA>``."""
        file_id = "_".join(file_id.split()) or "recording"
        return "".join(
            f"SPEAKER {file_id} 1 {s.start:.3f} {s.end - s.start:.3f} <NA> <NA> {s.label} <NA> <NA>\n"
            for s in self.segments
        )


@dataclass
class Windows:
    """What a timeline is made from: speech regions and embedded windows (a few kB a second).
    Reading them is the slow part (the model); labelling them is quick, so they can be read on
    other machines (``--ray``) and labelled where the profiles are."""

    starts: list[float] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    speech: list[tuple[float, float]] = field(default_factory=list)  # regions, seconds
    duration: float = 0.0


def build_timeline(
    embed: Callable[[np.ndarray], np.ndarray],
    names: list[str],
    profiles: np.ndarray,
    threshold: float,
    audio: AudioInput,
    *,
    name: str | None = None,
    model: str = "",
    min_turn: float = DEFAULT_MIN_TURN,
    progress: Callable[[float], None] | None = None,
) -> Timeline:
    """The timeline of ``audio`` against ``profiles`` (one row per name in ``names``).

    ``embed`` turns ``(N, samples)`` of 16 kHz audio into N L2-normalised vectors; ``threshold`` is the calibrated
    open-set threshold a voice must reach to be named."""
    windows = read_windows(embed, audio, name=name, progress=progress)
    return label_timeline(windows, names, profiles, threshold, model=model, min_turn=min_turn)


def read_windows(
    embed: Callable[[np.ndarray], np.ndarray],
    audio: AudioInput,
    *,
    name: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> Windows:
    """Speech and embedded windows of ``audio``, read a block at a time."""
    label, blocks = stream_audio(audio, name, block_seconds=BLOCK)
    return _windows(embed, blocks, label, progress)


def label_timeline(
    windows: Windows,
    names: list[str],
    profiles: np.ndarray,
    threshold: float,
    *,
    model: str = "",
    min_turn: float = DEFAULT_MIN_TURN,
) -> Timeline:
    """Turns from read windows: who each window is, then each frame of speech, then turns."""
    if not windows.starts:
        return Timeline([], model, windows.duration, threshold)
    vectors = np.stack(windows.vectors)
    hops = np.rint(np.array(windows.starts) / HOP).astype(np.int64)
    labels = label_windows(vectors, hops, names, profiles, threshold)
    segments = _segments(windows, labels, vectors, names, profiles, min_turn)
    return Timeline(segments, model, windows.duration, threshold)


def _windows(embed, blocks, label: str, progress) -> Windows:
    """Speech regions and embedded windows, a block at a time (windows may span blocks)."""
    detector = SpeechDetector(threshold=VAD_THRESHOLD)
    out = Windows()
    width, hop = int(WINDOW * SAMPLE_RATE), int(HOP * SAMPLE_RATE)
    carry = np.zeros(0, dtype=np.float32)  # the previous block's tail, so a window can cross the boundary
    carry_start = 0  # sample offset of carry[0]
    done = 0  # samples of the recording read so far
    next_window = 0  # sample offset of the next window on the hop grid
    speech_mask = np.zeros(0, dtype=bool)  # speech of ``carry + block``
    for block in blocks:
        samples = np.concatenate([carry, block])
        regions = detector.segments(Audio(samples, label)) if np.any(samples) else []
        speech_mask = np.zeros(len(samples), dtype=bool)
        for a, b in regions:
            speech_mask[a:b] = True
            start, end = (carry_start + a) / SAMPLE_RATE, (carry_start + b) / SAMPLE_RATE
            if out.speech and start <= out.speech[-1][1]:  # a region the previous block already saw
                out.speech[-1] = (out.speech[-1][0], max(out.speech[-1][1], end))
            else:
                out.speech.append((start, end))
        done += len(block)
        batch = []
        while next_window + width <= done:
            local = next_window - carry_start
            if speech_mask[local : local + width].mean() >= 0.5:
                out.starts.append(next_window / SAMPLE_RATE)
                batch.append(samples[local : local + width])
            next_window += hop
        for start in range(0, len(batch), BATCH):  # windows of one length: embedded together, nothing padded
            out.vectors.extend(embed(np.stack(batch[start : start + BATCH])))
        keep = done - next_window  # what later windows still need
        carry, carry_start = (
            samples[len(samples) - keep :] if keep > 0 else np.zeros(0, np.float32),
            done - max(keep, 0),
        )
        if progress:
            progress(done / SAMPLE_RATE)
    # the last stretch, shorter than a window: one window over what is left, if it is speech
    if len(carry) >= SAMPLE_RATE // 2 and speech_mask[len(speech_mask) - len(carry) :].mean() >= 0.5:
        out.starts.append(carry_start / SAMPLE_RATE)
        out.vectors.extend(embed(carry[None]))
    if done == 0:
        raise AudioError(label, "contains no audio (0 samples)")
    out.duration = done / SAMPLE_RATE
    return out


def _segments(windows: Windows, labels: list[str], vectors, names, profiles, min_turn: float) -> list[Segment]:
    """Frames of speech take the label in force at their time; runs become turns."""
    centres = np.array(windows.starts) + WINDOW / 2
    changes = _changes(centres, labels, vectors, names, profiles)
    frames: list[tuple[float, str, int]] = []  # (time, label, nearest window)
    for start, end in windows.speech:
        for t in np.arange(start, end, FRAME):
            i = int(np.clip(np.searchsorted(centres, t), 0, len(centres) - 1))
            if i > 0 and abs(centres[i - 1] - t) <= abs(centres[i] - t):
                i -= 1
            if abs(centres[i] - t) <= WINDOW:  # speech far from every window (too short) stays unlabelled
                k = int(np.searchsorted(changes[0], t, side="right")) - 1
                frames.append((float(t), changes[1][max(k, 0)], i))
    turns: list[list] = []  # [start, end, label, windows]
    for t, lab, i in frames:
        if turns and turns[-1][2] == lab and t - turns[-1][1] <= 2 * FRAME:
            turns[-1][1] = t + FRAME
            turns[-1][3].add(i)
        else:
            turns.append([t, t + FRAME, lab, {i}])
    turns = _absorb_short(turns, min_turn)
    index = {n: k for k, n in enumerate(names)}
    out = []
    for start, end, lab, members in turns:
        centre = centroid(vectors[sorted(members)])
        scores = sorted((profiles @ centre).tolist(), reverse=True) if len(names) else []
        chances, nobody = score_calibration.posteriors(scores[:5], len(names))
        if lab in index:
            score = float(profiles[index[lab]] @ centre)
            chance = chances[scores.index(score)] if score in scores[:5] else 0.0
            out.append(Segment(start, end, lab, lab, score, chance, centre))
        else:
            out.append(Segment(start, end, None, lab, scores[0] if scores else None, nobody, centre))
    return out


def _changes(centres: np.ndarray, labels: list[str], vectors, names, profiles) -> tuple[np.ndarray, list[str]]:
    """When each label takes over: between two windows with different labels, where the difference
    of their voices' scores crosses zero. A window centred on the change hears half of each voice,
    so the crossing is closer to the true boundary than the midpoint between window centres."""
    voice = {n: profiles[k] for k, n in enumerate(names)}
    for lab in set(labels) - set(voice):
        voice[lab] = centroid(vectors[[i for i, x in enumerate(labels) if x == lab]])
    times, after = [-np.inf], [labels[0]]
    for i in range(len(labels) - 1):
        a, b = labels[i], labels[i + 1]
        if a == b:
            continue
        d0 = float(vectors[i] @ voice[a] - vectors[i] @ voice[b])
        d1 = float(vectors[i + 1] @ voice[a] - vectors[i + 1] @ voice[b])
        share = d0 / (d0 - d1) if d0 > 0 > d1 else 0.5
        times.append(centres[i] + share * (centres[i + 1] - centres[i]))
        after.append(b)
    return np.array(times), after


def _absorb_short(turns: list[list], min_turn: float) -> list[list]:
    """A turn under ``min_turn`` right between two others (no pause) goes to the longer neighbour."""
    changed = True
    while changed:
        changed = False
        for k, (start, end, _lab, members) in enumerate(turns):
            if end - start >= min_turn:
                continue
            before = turns[k - 1] if k > 0 and start - turns[k - 1][1] <= 2 * FRAME else None
            after = turns[k + 1] if k + 1 < len(turns) and turns[k + 1][0] - end <= 2 * FRAME else None
            target = max((t for t in (before, after) if t is not None), key=lambda t: t[1] - t[0], default=None)
            if target is None:
                continue
            target[0], target[1] = min(target[0], start), max(target[1], end)
            target[3] |= members
            del turns[k]
            changed = True
            break
    merged: list[list] = []
    for turn in turns:
        if merged and merged[-1][2] == turn[2] and turn[0] - merged[-1][1] <= GAP_FILL:
            merged[-1][1] = turn[1]
            merged[-1][3] |= turn[3]
        else:
            merged.append(turn)
    return merged
