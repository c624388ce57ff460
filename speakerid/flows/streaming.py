"""Decisions while the person is still speaking.

Audio arrives in pieces; every :data:`UPDATE` seconds the stream looks again:

- **speech** is found in the new audio (with a little context), so ``speech_seconds`` grows only
  with speech;
- each new 1.5 s stretch of speech is embedded (the timeline's windows, :mod:`speakerid.flows.timeline`),
  and the evidence for the current voice is the mean of its windows' embeddings;
- from :data:`MIN_SPEECH` seconds of speech on, each update reports a running best guess;
- a **final** decision comes early when the evidence is enough: at least :data:`FINAL_SPEECH`
  seconds of speech, a score over the calibrated threshold, a margin over the runner-up, and the
  same answer for :data:`STABLE` consecutive updates; otherwise at the end of the stream;
- a **speaker change** is reported when the newest windows stop sounding like the voice so far
  (and like someone else, or no one); the evidence then starts again from the new voice.

Events: ``{"t", "speech_seconds", "speaker", "label", "score", "final", "reason"}`` (``t``: seconds
of audio received). One stream is not thread-safe; many streams may share one :class:`SpeakerID`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from speakerid.base import validate
from speakerid.base.errors import InsufficientSpeechError, UsageError
from speakerid.decide.decider import Decider
from speakerid.decide.scoring import centroid
from speakerid.flows.timeline import WINDOW
from speakerid.flows.window_labels import WINDOW_THRESHOLD
from speakerid.voice.audio import SAMPLE_RATE, Audio, Resampler
from speakerid.voice.engine import Embedder
from speakerid.voice.vad import DEFAULT_MIN_SPEECH, SpeechDetector
from store import SpeakerNotFoundError

UPDATE = 0.5  # seconds of audio between looks
MIN_SPEECH = DEFAULT_MIN_SPEECH  # speech before the first guess (as identify needs)
FINAL_SPEECH = 2.0  # speech before an early final decision
STABLE = 3  # consecutive agreeing updates for an early final decision
NO_MARGIN = 0.1  # an early "unknown" / "rejected" needs the score this far under the threshold, and twice the speech
CHANGE_WINDOWS = 3  # newest windows compared with the voice so far, to notice a new speaker
CHANGE_SCORE = 0.65  # newest windows vs the earlier ones: one voice scored 0.74-0.91 on mini-voxceleb1, two 0.5-0.62
CONTEXT = 1.0  # seconds of earlier audio speech detection sees with the new audio
KEEP = 12.0  # seconds of audio kept (windows and speech detection need no more)
MODES = ("identify", "verify")


@dataclass(frozen=True)
class Event:
    t: float
    speech_seconds: float
    speaker: str | None
    label: str  # the speaker, "unknown", or "accepted"/"rejected" for verification
    score: float | None
    final: bool
    reason: str
    confidence: float | None = None  # the probability that the answer so far is right

    def to_dict(self) -> dict:
        out = asdict(self)
        out["t"], out["speech_seconds"] = round(self.t, 3), round(self.speech_seconds, 3)
        out["score"] = None if self.score is None else round(self.score, 6)
        out["confidence"] = None if self.confidence is None else round(self.confidence, 4)
        return out


class Stream:
    """Feed audio with :meth:`feed`, get events; :meth:`close` gives the final decision."""

    def __init__(
        self,
        embedder: Embedder,
        decider: Decider,
        *,
        sample_rate: int = SAMPLE_RATE,
        mode: str = "identify",
        claim: str | None = None,
        threshold: float | None = None,
        known_claims_only: bool = True,
    ):
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)} (access: AccessControl.stream), not {mode!r}")
        self.rate = validate.count("sample_rate", sample_rate, low=8000, high=192_000)
        self.unknown_claim = False
        if mode == "verify":
            if claim is None:
                raise UsageError("verify mode needs a claim: the name to verify")
            try:
                claim = decider.claimed(claim)
            except SpeakerNotFoundError:
                if known_claims_only:
                    raise
                self.unknown_claim = True  # answered as a voice that does not match, never "no such name"
        self.decider, self.mode, self.claim = decider, mode, claim
        self.threshold = decider.threshold if threshold is None else validate.threshold(threshold)
        self.embedder = embedder
        self.detector = SpeechDetector()
        self.received = 0  # samples at self.rate
        self.audio = np.zeros(0, dtype=np.float32)  # 16 kHz, the last KEEP seconds
        self.offset = 0  # 16 kHz sample index of audio[0]
        self.pending = np.zeros(0, dtype=np.float32)  # input not yet resampled
        self.resampler = Resampler(self.rate)  # one filter across chunks: no clicks at the joins
        self.speech: list[tuple[int, int]] = []  # 16 kHz regions, absolute
        self.looked = 0  # 16 kHz samples already looked at
        self.next_window = 0  # absolute 16 kHz start of the next window
        self.windows: list[np.ndarray] = []  # embeddings of the current voice's windows
        self.recent: list[np.ndarray] = []  # the newest windows, to notice a change
        self.agreeing, self.last_answer = 0, None
        self.final: Event | None = None

    # -- the stream -----------------------------------------------------------------------------
    def feed(self, samples) -> list[Event]:
        """Add audio (float samples in [-1, 1] at the stream's rate, or 16-bit integers)."""
        samples = as_float_samples(samples)
        self.received += len(samples)
        self.pending = np.concatenate([self.pending, samples])
        step = int(UPDATE * self.rate)
        events: list[Event] = []
        while len(self.pending) >= step:
            chunk, self.pending = self.pending[:step], self.pending[step:]
            events += self._update(chunk)
        return events

    def close(self) -> Event:
        """The final decision on what was heard (after an early final: that one)."""
        if len(self.pending) or not self.resampler.done and self.rate != SAMPLE_RATE:
            self._update(self.pending, last=True)
            self.pending = np.zeros(0, dtype=np.float32)
        if self.final is not None:
            return self.final
        return self._decide(final=True, closing=True)

    @property
    def seconds(self) -> float:
        return self.received / self.rate

    @property
    def speech_seconds(self) -> float:
        return sum(b - a for a, b in self.speech) / SAMPLE_RATE

    # -- one look ------------------------------------------------------------------------------------
    def _update(self, chunk: np.ndarray, *, last: bool = False) -> list[Event]:
        audio = self.resampler.feed(chunk, last=last)
        self.audio = np.concatenate([self.audio, audio])
        end = self.offset + len(self.audio)
        self._find_speech(end)
        events = self._embed_new_windows(end)
        if self.final is None and self.speech_seconds >= MIN_SPEECH and self.windows:
            events.append(self._decide(final=False))
        drop = max(0, len(self.audio) - int(KEEP * SAMPLE_RATE))
        self.audio, self.offset = self.audio[drop:], self.offset + drop
        return events

    def _find_speech(self, end: int) -> None:
        start = max(self.offset, self.looked - int(CONTEXT * SAMPLE_RATE))
        piece = self.audio[start - self.offset :]
        for a, b in self.detector.segments(Audio(piece, "stream")) if np.any(piece) else []:
            a, b = max(a + start, self.looked), b + start
            if b <= a:
                continue
            if self.speech and a <= self.speech[-1][1] + SAMPLE_RATE // 10:
                self.speech[-1] = (self.speech[-1][0], max(self.speech[-1][1], b))
            else:
                self.speech.append((a, b))
        self.looked = end

    def _embed_new_windows(self, end: int) -> list[Event]:
        width, hop = int(WINDOW * SAMPLE_RATE), int(UPDATE * SAMPLE_RATE)
        events: list[Event] = []
        batch, starts = [], []
        while self.next_window + width <= end:
            a = self.next_window
            if a >= self.offset and self._speech_share(a, a + width) >= 0.5:
                batch.append(self.audio[a - self.offset : a - self.offset + width])
                starts.append(a)
            self.next_window += hop
        if not batch:
            return events
        for vector in self.embedder.embed_equal(np.stack(batch)):
            if self._changed(vector):
                events.append(self._change_event())
            self.windows.append(vector)
            self.recent = (self.recent + [vector])[-CHANGE_WINDOWS:]
        return events

    def _speech_share(self, a: int, b: int) -> float:
        return sum(max(0, min(b, y) - max(a, x)) for x, y in self.speech) / (b - a)

    def _changed(self, vector: np.ndarray) -> bool:
        """The newest windows no longer sound like the earlier ones, and the profiles agree: they
        sound like another enrolled speaker, or like no one."""
        if len(self.windows) < CHANGE_WINDOWS + 2:
            return False
        newest = centroid(np.stack(self.recent[-(CHANGE_WINDOWS - 1) :] + [vector]))
        earlier = centroid(np.stack(self.windows[: -(CHANGE_WINDOWS - 1)]))
        if float(newest @ earlier) >= CHANGE_SCORE:
            return False
        before, after = self.decider.profiles.rank(earlier, top_k=1), self.decider.profiles.rank(newest, top_k=1)
        return not before or before[0].speaker != after[0].speaker or after[0].score < WINDOW_THRESHOLD

    def _change_event(self) -> Event:
        before = self._answer()
        event = Event(self.seconds, self.speech_seconds, before[0], before[1], before[2], False, "speaker changed")
        keep = self.recent[-(CHANGE_WINDOWS - 1) :]
        self.windows, self.recent = list(keep), list(keep)
        self.agreeing, self.last_answer = 0, None
        if self.final is not None:
            self.final = None  # a new voice: a new decision
        return event

    # -- deciding ------------------------------------------------------------------------------------
    def _answer(self) -> tuple[str | None, str, float | None, str, bool, float | None]:
        """``(speaker, label, score, reason, sure, confidence)`` from the evidence so far."""
        if not self.windows:
            return None, "unknown", None, "no speech yet", False, None
        evidence = centroid(np.stack(self.windows))
        if self.mode == "verify" and self.unknown_claim:
            return None, "rejected", None, "voice does not match the claimed speaker", False, None
        if self.mode == "verify":
            verdict = self.decider.verify(evidence, self.claim, threshold=self.threshold)
            return (
                self.claim if verdict.accepted else None,
                "accepted" if verdict.accepted else "rejected",
                verdict.score,
                "match" if verdict.accepted else f"score {verdict.score:.3f} is under the threshold {self.threshold:g}",
                verdict.accepted,
                verdict.confidence,
            )
        found = self.decider.identify(evidence, threshold=self.threshold, top_k=2)
        return (
            found.speaker,
            found.speaker or "unknown",
            found.score if found.candidates else None,
            found.reason,
            found.speaker is not None,
            found.confidence,
        )

    def _decide(self, *, final: bool, closing: bool = False) -> Event:
        speaker, label, score, reason, sure, confidence = self._answer()
        if closing and self.speech_seconds < MIN_SPEECH:
            error = InsufficientSpeechError("stream", got=self.speech_seconds, need=MIN_SPEECH)
            speaker, label, score, reason, confidence = None, "unknown", score, error.reason, None
        answer = (speaker, label)
        self.agreeing = self.agreeing + 1 if answer == self.last_answer else 1
        self.last_answer = answer
        clear_no = score is not None and score < self.threshold - NO_MARGIN and self.speech_seconds >= 2 * FINAL_SPEECH
        early = not final and (sure and self.speech_seconds >= FINAL_SPEECH or clear_no) and self.agreeing >= STABLE
        event = Event(
            self.seconds,
            self.speech_seconds,
            speaker,
            label,
            score,
            final or early,
            ("early: " + reason) if early else reason,
            confidence,
        )
        if event.final:
            self.final = event
        return event


def as_float_samples(samples) -> np.ndarray:
    """A stream's piece of audio as float32 in [-1, 1] (int16 scaled), or a one-line UsageError."""
    data = np.asarray(samples)
    if data.ndim != 1:
        raise UsageError(f"stream samples must be mono, one dimension; got shape {data.shape}")
    if data.dtype == np.int16:
        return data.astype(np.float32) / 32768.0
    if not np.issubdtype(data.dtype, np.floating):
        raise UsageError(f"stream samples must be float or int16, not {data.dtype}")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise UsageError("stream samples contain NaN or infinite values")
    return data
