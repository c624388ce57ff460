"""The public Python API: ``SpeakerID.open(home).identify(clip)``.

Example
-------
>>> sid = SpeakerID.open("~/voices")                          # doctest: +SKIP
>>> sid.enroll("alice", ["alice/"])                           # doctest: +SKIP
>>> sid.identify("door-mic.wav").speaker                      # doctest: +SKIP
'alice'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import Speaker, SpeakerNotFoundError, Store

from .audio import DEFAULT_MAX_SECONDS, AudioInput, load_audio
from .embedder import Embedder
from .paths import default_home
from .scoring import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Candidate, Profiles, decide
from .vad import DEFAULT_MIN_SPEECH, extract_speech


@dataclass(frozen=True)
class Identification:
    speaker: str | None  # None: unknown
    score: float
    threshold: float
    candidates: list[Candidate]
    speech_seconds: float
    model: str
    reason: str

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "score": round(self.score, 6), "threshold": self.threshold,
                "candidates": [c.to_dict() for c in self.candidates], "speech_seconds": round(self.speech_seconds, 2),
                "model": self.model, "reason": self.reason}


@dataclass(frozen=True)
class Verification:
    speaker: str
    accepted: bool
    score: float
    threshold: float
    speech_seconds: float = 0.0
    model: str = ""

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "accepted": self.accepted, "score": round(self.score, 6),
                "threshold": self.threshold, "speech_seconds": round(self.speech_seconds, 2), "model": self.model}


@dataclass
class Options:
    """Per-instance knobs; every one can also be overridden per call where it makes sense."""

    min_speech: float = DEFAULT_MIN_SPEECH  # to identify or verify
    max_seconds: float = DEFAULT_MAX_SECONDS
    speech_only: bool = False
    margin: float = DEFAULT_MARGIN


class SpeakerID:
    """A voiceprint store plus the model that reads voices into it. Loads the model on first use."""

    def __init__(self, store: Store, model: str | None = None, device: str = "cpu", options: Options | None = None):
        self.store = store
        self.home = store.home
        self.model_spec = model
        self.device = device
        self.options = options or Options()
        self.profiles = Profiles(store)
        self._embedder: Embedder | None = None

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, *, model: str | None = None, device: str = "cpu",
             options: Options | None = None) -> "SpeakerID":
        """Open the store at ``home`` (default: ``SPEAKERID_HOME`` or the XDG data dir)."""
        store = Store.open(Path(home).expanduser() if home else default_home())
        return cls(store, model=model, device=device, options=options)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "SpeakerID":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            embedder = Embedder.load(self.model_spec, device=self.device)
            self.store.check_model(embedder.model_id, embedder.dimension)
            self._embedder = embedder
        return self._embedder

    @property
    def threshold(self) -> float:
        """The store's calibrated threshold if one was set, else the default for the default model."""
        return float(self.store.setting("threshold", DEFAULT_THRESHOLD))

    def set_threshold(self, value: float) -> None:
        if not -1.0 <= value <= 1.0:
            raise ValueError("a cosine threshold lies between -1 and 1")
        self.store.set_setting("threshold", float(value))

    # -- voices in -----------------------------------------------------------------------------
    def embed(self, audio: AudioInput, name: str | None = None, *, min_speech: float | None = None):
        """``(embedding, speech)`` for one clip, refusing clips with too little speech."""
        decoded = load_audio(audio, name, max_seconds=self.options.max_seconds)
        speech = extract_speech(decoded, min_speech=self.options.min_speech if min_speech is None else min_speech,
                                speech_only=self.options.speech_only)
        return self.embedder.embed([speech.samples])[0], speech

    def enroll(self, name: str, clips, *, replace: bool = False, append: bool = False, metadata: dict | None = None,
               strict: bool = False, **limits):
        """Enroll ``name`` from clips (paths, folders, bytes or ``(samples, rate)`` pairs); see :mod:`enroll`."""
        from enroll.pipeline import enroll_speaker

        if isinstance(clips, (str, os.PathLike, bytes, tuple)):
            clips = [clips]
        return enroll_speaker(self.store, self.embedder, self.profiles, name, list(clips), replace=replace,
                              append=append, metadata=metadata, strict=strict, threshold=self.threshold,
                              max_seconds=self.options.max_seconds, **limits)

    # -- questions -----------------------------------------------------------------------------
    def identify(self, audio: AudioInput, *, top_k: int = 5, threshold: float | None = None,
                 name: str | None = None) -> Identification:
        """Who is speaking: a speaker, or ``None`` (unknown) when no one scores high enough."""
        vector, speech = self.embed(audio, name)
        threshold = self.threshold if threshold is None else float(threshold)
        candidates = self.profiles.rank(vector, top_k=max(int(top_k), 2))
        decision = decide(candidates, threshold, self.options.margin)
        return Identification(speaker=decision.speaker, score=decision.score, threshold=threshold,
                              candidates=candidates[: max(int(top_k), 1)], speech_seconds=speech.seconds,
                              model=self.embedder.model_id, reason=decision.reason)

    def verify(self, speaker: str, audio: AudioInput, *, threshold: float | None = None,
               name: str | None = None) -> Verification:
        """Is this ``speaker``? Accepted when the score against their profile reaches the threshold."""
        profile = self.profiles.vector(speaker)
        if profile is None:
            raise SpeakerNotFoundError(speaker)
        vector, speech = self.embed(audio, name)
        threshold = self.threshold if threshold is None else float(threshold)
        score = float(np.dot(vector, profile))
        return Verification(speaker=speaker, accepted=score >= threshold, score=score, threshold=threshold,
                            speech_seconds=speech.seconds, model=self.embedder.model_id)

    # -- the store -----------------------------------------------------------------------------
    def speakers(self) -> list[Speaker]:
        return self.store.speakers()

    def remove(self, name: str) -> None:
        """Erase a speaker's voiceprint: database rows, index entries, and the freed bytes."""
        self.store.remove_speaker(name)
