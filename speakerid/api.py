"""The public Python API: ``SpeakerID.open(home).identify(clip)``.

>>> from speakerid import SpeakerID
>>> sid = SpeakerID.open("~/voices")                          # doctest: +SKIP
>>> sid.enroll("alice", ["alice/"]).clips                     # doctest: +SKIP
7
>>> sid.identify("door-mic.wav").speaker                      # doctest: +SKIP
'alice'
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import SpeakerNotFoundError, Store, is_postgres_url, open_store

from . import validate
from .audio import DEFAULT_MAX_SECONDS, AudioInput
from .embedder import Embedder
from .enrollment import MIN_CLIP_SPEECH, MIN_TOTAL_SPEECH, Enrollment, EnrollResult, Limits
from .errors import UsageError
from .paths import default_home
from .calibration import DEFAULT_FAR, Calibration, calibrate
from .scoring import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Candidate, Profiles, decide
from .streaming import Stream
from .timeline import DEFAULT_MIN_TURN, Timeline, build_timeline
from .vad import DEFAULT_MIN_SPEECH, Speech
from .voice import Voice, VoiceReader


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
        return {"speaker": self.speaker, "score": round(self.score, 6), "threshold": round(self.threshold, 6),
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
    note: str = ""  # why the threshold is not the one asked for (a false-accept target too few speakers can set)

    def to_dict(self) -> dict:
        out = {"speaker": self.speaker, "accepted": self.accepted, "score": round(self.score, 6),
               "threshold": round(self.threshold, 6), "speech_seconds": round(self.speech_seconds, 2),
               "model": self.model}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Options:
    """Per-instance knobs; thresholds and ``top_k`` are per call."""

    min_speech: float = DEFAULT_MIN_SPEECH  # seconds of speech to identify or verify
    max_seconds: float = DEFAULT_MAX_SECONDS
    speech_only: bool = False
    margin: float = DEFAULT_MARGIN
    background_calibration: bool = False  # a long-running process: see SpeakerID.measured

    def __post_init__(self) -> None:
        self.min_speech = validate.seconds("min_speech", self.min_speech)
        self.max_seconds = validate.seconds("max_seconds", self.max_seconds, low=0.1)
        self.margin = validate.number("margin", self.margin, low=0.0, high=2.0)


def store_location(home: str | os.PathLike | None = None, store: str | os.PathLike | None = None) -> str | Path:
    """Where the store is: ``store`` (a URL or folder), else ``home``, else ``SPEAKERID_STORE``,
    else ``SPEAKERID_HOME`` or the XDG data folder."""
    for given, what in ((store, "store"), (home, "home")):
        if given is None:
            continue
        if not isinstance(given, (str, os.PathLike)) or not os.fspath(given).strip():
            raise UsageError(f"{what} must be a folder or a postgresql:// URL, got {given!r}")
        return str(given) if is_postgres_url(given) else Path(os.fspath(given)).expanduser()
    env = os.environ.get("SPEAKERID_STORE")
    if env:
        return env if is_postgres_url(env) else Path(env).expanduser()
    return default_home()


class SpeakerID:
    """A voiceprint store plus the model that reads voices into it. Loads the model on first use."""

    def __init__(self, store: Store, model: str | None = None, device: str = "cpu", options: Options | None = None):
        if not isinstance(store, Store):
            raise UsageError(f"SpeakerID needs a Store (use SpeakerID.open(home)), not {type(store).__name__}")
        self.store = store
        self.home = getattr(store, "home", None)
        self.model_spec = model
        self.device = device
        self.options = options or Options()
        self.profiles = Profiles(store)
        self._reader: VoiceReader | None = None
        self._calibration: Calibration | None = None
        self._calibration_holds_at = -1  # the generation it was last found to describe
        self._measuring = threading.Lock()  # held while a measurement runs in the background

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, *, store: str | os.PathLike | None = None,
             model: str | None = None, device: str = "cpu", options: Options | None = None) -> "SpeakerID":
        """Open the store in ``home`` or at ``store`` (a folder or ``postgresql://`` URL); see
        :func:`store_location` for the defaults."""
        return cls(open_store(store_location(home, store)), model=model, device=device, options=options)

    def close(self) -> None:
        with self._measuring:  # a background measurement finishes (and is stored) first
            self.store.close()

    def __enter__(self) -> "SpeakerID":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        return self.reader.embedder

    @property
    def reader(self) -> VoiceReader:
        """The clip → vector path (decode, speech, embedding) with this instance's options."""
        if self._reader is None:
            embedder = Embedder.load(self.model_spec, device=self.device)
            self.store.voiceprints.check_model(embedder.model_id, embedder.dimension)
            self._reader = VoiceReader(embedder, max_seconds=self.options.max_seconds,
                                       speech_only=self.options.speech_only)
        return self._reader

    @property
    def threshold(self) -> float:
        """The open-set decision threshold: set by hand, else calibrated on the enrolled population."""
        return self.calibration().threshold

    def set_threshold(self, value: float | None) -> None:
        """Fix the threshold by hand (``None``: back to self-calibration)."""
        self.store.settings.set("threshold", None if value is None else validate.threshold(value))

    @property
    def far(self) -> float:
        """The open-set false-accept target the threshold is calibrated for."""
        return float(self.store.settings.get("far", DEFAULT_FAR))

    def set_far(self, far: float | None) -> None:
        """Calibrate for another false-accept target (``None``: back to the default)."""
        self.store.settings.set("far", None if far is None else validate.far(far))

    def calibration(self) -> Calibration:
        """The threshold and what it rests on: set by hand, else measured on the population (see
        :mod:`speakerid.calibration`)."""
        user = self.store.settings.get("threshold")
        if user is not None:
            return Calibration(threshold=float(user), source="user", far=self.far)
        return self.measured()

    def measured(self) -> Calibration:
        """The population's calibration, measured again when the enrolled speakers changed since it
        was last measured (by more than 1 % of the clips in a large store:
        :meth:`Calibration.describes`), by any process: it is kept in the store with the
        generation it describes. With ``Options(background_calibration=True)`` (the service), a
        large store's standing measurement answers while a thread takes the next
        (:meth:`Calibration.stands_in_for`), so no request waits seconds for it."""
        far = self.far
        cached = self._calibration
        if cached is not None and cached.far == far and self._calibration_holds_at == self.store.voiceprints.generation:
            return cached
        now = self.store.voiceprints.counts()  # counted: the vectors are read only to measure again
        if cached is None or cached.far != far or not cached.describes(now.generation, now.clips):
            stored = self.store.settings.get("calibration")
            cached = Calibration.from_dict(stored) if stored else None
            if cached is None or cached.far != far or not cached.describes(now.generation, now.clips):
                if self.options.background_calibration and cached is not None and cached.far == far \
                        and cached.stands_in_for(now.clips):
                    self._measure_in_background(far)
                    return cached  # not kept as holding: the next call looks for the new one
                cached = self._measure(far)
            self._calibration = cached
        self._calibration_holds_at = now.generation
        return cached

    def _measure(self, far: float, *, aside: bool = False) -> Calibration:
        generation, vectors, owners = self.profiles.snapshot()
        limit = contextlib.nullcontext()
        if aside:  # in the background: the arithmetic at the lowest priority, on one core
            from threadpoolctl import threadpool_limits

            if sys.platform.startswith("linux"):  # a thread's own niceness there; after the reads, which hold locks
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            limit = threadpool_limits(1)
        with limit:
            measured = calibrate(vectors, owners, far, generation=generation)
        self.store.settings.set("calibration", measured.to_dict(detail=True))
        return measured

    def _measure_in_background(self, far: float) -> None:
        if not self._measuring.acquire(blocking=False):
            return  # one is running: its result will do

        def work() -> None:
            try:
                self._calibration = self._measure(far, aside=True)
            except Exception as exc:  # the standing measurement stays; the next call tries again
                logging.getLogger(__name__).warning("measuring the threshold again failed: %s", exc)
            finally:
                self._measuring.release()

        threading.Thread(target=work, name="speakerid-calibration", daemon=True).start()

    def threshold_for(self, far: float, *, comparisons: int = 1, prior: float = DEFAULT_THRESHOLD) -> float:
        """The cosine that gives false-accept rate ``far`` over ``comparisons`` (1 to verify a claim,
        the number of speakers to identify), measured on this population; ``prior`` where it is too
        small to measure."""
        far = validate.far(far)
        measured = self.measured()
        if measured.source != "calibrated":
            return prior
        return round(measured.threshold_at(far, comparisons), 6)

    # -- voices in ---------------------------------------------------------------------------------
    def read(self, audio: AudioInput, name: str | None = None, *, min_speech: float | None = None) -> Voice:
        """One clip through the clip → vector path, refusing it with under ``min_speech`` s of speech."""
        need = self.options.min_speech if min_speech is None else validate.seconds("min_speech", min_speech)
        return self.reader.read(audio, name, min_speech=need)

    def embed(self, audio: AudioInput, name: str | None = None, *,
              min_speech: float | None = None) -> tuple[np.ndarray, Speech]:
        """``(embedding, speech)`` for one clip (see :meth:`read`)."""
        voice = self.read(audio, name, min_speech=min_speech)
        return voice.vector, voice.speech

    def enroll(self, name: str, clips, *, replace: bool = False, append: bool = False, metadata: dict | None = None,
               strict: bool = False, skip_bad: bool = False, min_speech: float = MIN_TOTAL_SPEECH,
               min_clip_speech: float = MIN_CLIP_SPEECH, labels: list[str | None] | None = None) -> EnrollResult:
        """Enroll ``name`` from clips (paths, folders, bytes or ``(samples, rate)`` pairs).

        Every clip is read and checked before anything is written (see :mod:`speakerid.enrollment`);
        ``skip_bad`` leaves failing clips out instead of refusing the enrollment.
        """
        if replace and append:
            raise UsageError("choose one of append (add clips) and replace (start over)")
        if metadata is not None and not isinstance(metadata, dict):
            raise UsageError(f"metadata must be a dict, not {type(metadata).__name__}")
        limits = Limits(min_speech=validate.seconds("min_speech", min_speech),
                        min_clip_speech=validate.seconds("min_clip_speech", min_clip_speech))
        job = Enrollment(self.store, self.reader, self.profiles, same_voice=lambda: self.threshold, limits=limits,
                         skip_bad=skip_bad, strict=strict)
        mode = "replace" if replace else "append" if append else "new"
        result = job.run(name, clips, mode=mode, metadata=metadata, labels=labels)
        self.measured()  # the population changed: measure it again now (even under a hand-set threshold)
        return result

    # -- questions ---------------------------------------------------------------------------------
    def identify(self, audio: AudioInput, *, top_k: int = 5, threshold: float | None = None,
                 name: str | None = None) -> Identification:
        """Who is speaking: a speaker, or ``None`` (unknown) when no one scores high enough."""
        top_k = validate.count("top_k", top_k, low=1, high=1000)
        threshold = self.threshold if threshold is None else validate.threshold(threshold)
        voice = self.read(audio, name)
        return self.decide(voice.vector, threshold=threshold, top_k=top_k, speech_seconds=voice.speech.seconds)

    def decide(self, vector: np.ndarray, *, threshold: float, top_k: int = 5, speech_seconds: float = 0.0,
               exclude: str | None = None) -> Identification:
        """The open-set answer for one embedding (identify, live streams and /v1/classify share it)."""
        candidates = self.profiles.rank(vector, top_k=max(top_k, 2), exclude=exclude)
        decision = decide(candidates, threshold, self.options.margin)
        return Identification(speaker=decision.speaker, score=decision.score, threshold=threshold,
                              candidates=candidates[:top_k], speech_seconds=speech_seconds,
                              model=self.embedder.model_id, reason=decision.reason)

    def verify(self, speaker: str, audio: AudioInput, *, threshold: float | None = None, far: float | None = None,
               name: str | None = None) -> Verification:
        """Is this ``speaker``? Accepted when the score against their profile reaches the threshold:
        ``threshold`` (a cosine), else the one for a per-comparison false-accept rate ``far``, else
        the store's."""
        if threshold is not None and far is not None:
            raise UsageError("give a threshold or a false-accept rate, not both")
        note = ""
        if far is not None and (measured := self.measured()).source != "calibrated":
            note = (f"the false-accept target {far:g} could not be applied: {measured.speakers} speakers and "
                    f"{measured.comparisons} impostor comparisons are too few to measure it; the prior "
                    f"{DEFAULT_THRESHOLD:g} is used")
        threshold = (validate.threshold(threshold) if threshold is not None else
                     self.threshold_for(far) if far is not None else self.threshold)
        speaker = self.store.voiceprints.display_name(speaker)
        profile = self.profiles.vector(speaker)
        if profile is None:
            raise SpeakerNotFoundError(speaker)
        voice = self.read(audio, name)
        score = float(np.dot(voice.vector, profile))
        return Verification(speaker=speaker, accepted=score >= threshold, score=score, threshold=threshold,
                            speech_seconds=voice.speech.seconds, model=self.embedder.model_id, note=note)

    def timeline(self, audio: AudioInput, *, threshold: float | None = None, min_turn: float = DEFAULT_MIN_TURN,
                 name: str | None = None, progress=None) -> Timeline:
        """Who spoke when in a multi-speaker recording: turns labelled with enrolled names or
        ``unknown-N`` (see :mod:`speakerid.timeline`). Long recordings are read a block at a time."""
        threshold = self.threshold if threshold is None else validate.threshold(threshold)
        min_turn = validate.seconds("min_turn", min_turn, high=60)
        names, profiles = self.profiles.matrix()
        embedder = self.embedder
        return build_timeline(embedder.embed_equal, names, profiles, threshold, audio,
                              name=name, model=embedder.model_id, min_turn=min_turn, progress=progress)

    def stream(self, sample_rate: int = 16_000, mode: str = "identify", *, claim: str | None = None,
               threshold: float | None = None) -> Stream:
        """Decisions while audio arrives: ``stream.feed(samples) -> [Event]``, ``stream.close() -> Event``
        (see :mod:`speakerid.streaming`). ``mode``: ``"identify"`` or ``"verify"`` (with ``claim``);
        for doors, ``AccessControl(sid).stream(resource)``."""
        if mode == "access":
            raise UsageError("an access stream needs the access rules: AccessControl(sid).stream(resource, claim=...)")
        return Stream(self, sample_rate=sample_rate, mode=mode, claim=claim, threshold=threshold)

    # -- the store ---------------------------------------------------------------------------------
    def speakers(self):
        return self.store.voiceprints.speakers()

    def remove(self, name: str) -> None:
        """Erase a speaker's voiceprint: rows, vectors, grants, index entries (see SECURITY.md)."""
        self.store.voiceprints.remove_speaker(name)
        self.measured()
