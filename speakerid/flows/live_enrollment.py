"""Enrollment while someone speaks: how good the voiceprint would be, every second, and the
enrollment itself when they stop.

Speech is found in the audio as it arrives (with a second of context, as streams do). Every
:data:`PIECE` seconds of speech become one piece, embedded on arrival, and the enrollment feedback
(:func:`speakerid.flows.quality.feedback`) is computed over the pieces so far: net speech, how well
the pieces agree, the share of new recordings expected to be named, and advice. ``progress`` is
the speech so far over :data:`~speakerid.flows.quality.GOOD_SPEECH`: the bar a person watches.

At the end the pieces (a short last one joined to the one before) are the clips of an ordinary
enrollment, through its gates: what ``finish`` does (``SpeakerID.enroll`` for a name, nothing for
feedback alone). The audio is held in memory until then and never written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from speakerid.base import validate
from speakerid.flows.quality import GOOD_SPEECH, feedback
from speakerid.flows.streaming import CONTEXT, as_float_samples
from speakerid.voice.audio import SAMPLE_RATE, Audio, Resampler
from speakerid.voice.engine import Embedder
from speakerid.voice.vad import SpeechDetector

PIECE = 4.0  # seconds of speech per piece: what a clip needs to say something, small enough to agree or not
UPDATE = 1.0  # seconds of audio between reports
MIN_LAST = 2.0  # a last piece with less speech joins the one before


@dataclass(frozen=True)
class Progress:
    """One report: ``{"type": "quality", "t", "speech_seconds", "goal_seconds", "progress",
    "agreement", "expected_accept", "advice"}`` (``t``: seconds of audio received)."""

    t: float
    speech_seconds: float
    goal_seconds: float
    progress: float
    agreement: float | None
    expected_accept: float | None
    advice: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"type": "quality", **asdict(self), "t": round(self.t, 3)}


class LiveEnrollment:
    """Feed audio with :meth:`feed` (reports come back every :data:`UPDATE` s); :meth:`close` ends it
    and returns what ``finish(clips)`` returns, ``clips`` being ``(samples, 16000)`` pairs.

    >>> from speakerid.voice.engine import Embedder
    >>> class Flat(Embedder):  # a stand-in voice: every piece sounds the same
    ...     sample_rate, dimension = 16000, 2
    ...     def _run(self, clips): return np.tile([1.0, 0.0], (len(clips), 1)).astype(np.float32)
    >>> live = LiveEnrollment(Flat(), threshold=0.5, finish=len)
    >>> live.feed(np.zeros(16000, dtype=np.int16))[0].advice[0]
    'add 20 s of speech from another recording (20 s in all)'
    >>> live.close()  # no speech, no clips
    0
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float,
        finish: Callable[[list[tuple[np.ndarray, int]]], object],
        sample_rate: int = SAMPLE_RATE,
    ):
        self.rate = validate.count("sample_rate", sample_rate, low=8000, high=192_000)
        self.embedder, self.threshold, self.finish = embedder, threshold, finish
        self.detector = SpeechDetector()
        self.resampler = Resampler(self.rate)
        self.received = 0
        self.pending = np.zeros(0, dtype=np.float32)  # input not yet resampled
        self.context = np.zeros(0, dtype=np.float32)  # the last CONTEXT seconds already searched, 16 kHz
        self.speech: list[np.ndarray] = []  # speech not yet in a piece
        self.pieces: list[np.ndarray] = []  # PIECE seconds of speech each
        self.vectors: list[np.ndarray] = []

    @property
    def speech_seconds(self) -> float:
        return (sum(len(p) for p in self.pieces) + sum(len(s) for s in self.speech)) / SAMPLE_RATE

    def feed(self, samples) -> list[Progress]:
        """Add audio (float samples in [-1, 1] at the stream's rate, or 16-bit integers)."""
        samples = as_float_samples(samples)
        self.received += len(samples)
        self.pending = np.concatenate([self.pending, samples])
        step = int(UPDATE * self.rate)
        reports = []
        while len(self.pending) >= step:
            chunk, self.pending = self.pending[:step], self.pending[step:]
            self._update(chunk)
            reports.append(self.report())
        return reports

    def report(self) -> Progress:
        """How good the voiceprint would be from what was heard so far."""
        vectors = np.stack(self.vectors) if self.vectors else np.zeros((0, self.embedder.dimension), np.float32)
        quality = feedback(vectors, self.speech_seconds, self.threshold)
        return Progress(
            self.received / self.rate,
            round(self.speech_seconds, 1),
            GOOD_SPEECH,
            round(min(1.0, self.speech_seconds / GOOD_SPEECH), 3),
            quality["agreement"],
            quality["expected_accept"],
            quality["advice"],
        )

    def close(self):
        """Run ``finish`` on the pieces (the rest of the speech joined to the last one)."""
        self._update(self.pending, last=True)
        self.pending = np.zeros(0, dtype=np.float32)
        clips = list(self.pieces)
        rest = np.concatenate(self.speech) if self.speech else np.zeros(0, dtype=np.float32)
        if clips and len(rest) < MIN_LAST * SAMPLE_RATE:
            clips[-1] = np.concatenate([clips[-1], rest])
        elif len(rest):
            clips.append(rest)
        return self.finish([(clip, SAMPLE_RATE) for clip in clips])

    def _update(self, chunk: np.ndarray, *, last: bool = False) -> None:
        new = self.resampler.feed(chunk, last=last)
        audio, seen = np.concatenate([self.context, new]), len(self.context)
        for a, b in self.detector.segments(Audio(audio, "stream")) if np.any(new) else []:
            if b > max(a, seen):
                self.speech.append(audio[max(a, seen) : b])
        self.context = audio[-int(CONTEXT * SAMPLE_RATE) :]
        width = int(PIECE * SAMPLE_RATE)
        while sum(len(s) for s in self.speech) >= width:
            joined = np.concatenate(self.speech)
            self.pieces.append(joined[:width])
            self.speech = [joined[width:]] if len(joined) > width else []
            self.vectors.append(self.embedder.embed([self.pieces[-1]])[0])
