"""The public Python API: ``SpeakerID.open(home).identify(clip)``.

Thin wiring: a store (:mod:`store`), the clip → voiceprint path (:mod:`speakerid.voice`), the
:class:`~speakerid.decide.decider.Decider` and the flows (:mod:`speakerid.flows`). Every method is
a few lines that hand the right parts to the layer that does the work.

>>> import tempfile
>>> from speakerid import SpeakerID
>>> voices = "../shared/data/mini-voxceleb1/wav/id90001/ls142285"
>>> with SpeakerID.open(tempfile.mkdtemp()) as sid:
...     sid.enroll("alice", [f"{voices}/0000{i}.wav" for i in range(1, 8)]).clips
...     sid.identify(f"{voices}/00009.wav").speaker
7
'alice'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerid.apps.archive import Archive
from speakerid.base import validate
from speakerid.base.errors import EnrollmentError, InsufficientSpeechError, UsageError
from speakerid.base.paths import default_home
from speakerid.decide.calibration import Calibration
from speakerid.decide.decider import Decider, Identification, Verification
from speakerid.decide.scoring import DEFAULT_MARGIN, DEFAULT_THRESHOLD, Profiles
from speakerid.flows.enrollment import MIN_CLIP_SPEECH, MIN_TOTAL_SPEECH, Enrollment, EnrollResult, Limits
from speakerid.flows.live_enrollment import LiveEnrollment
from speakerid.flows.streaming import Stream
from speakerid.flows.timeline import DEFAULT_MIN_TURN, Timeline, build_timeline
from speakerid.flows.turns import as_span, read_rttm, turn_clips, turns_of
from speakerid.voice.audio import DEFAULT_MAX_SECONDS, AudioInput
from speakerid.voice.embedder import Embedder, load_embedder
from speakerid.voice.reader import Voice, VoiceReader
from speakerid.voice.vad import DEFAULT_MIN_SPEECH, Speech
from store import Store, is_postgres_url, open_store, speaker_name

__all__ = ["Identification", "Options", "SpeakerID", "Verification", "store_location"]


@dataclass
class Options:
    """Per-instance knobs; thresholds and ``top_k`` are per call."""

    min_speech: float = DEFAULT_MIN_SPEECH  # seconds of speech to identify or verify
    max_seconds: float = DEFAULT_MAX_SECONDS
    speech_only: bool = False
    margin: float = DEFAULT_MARGIN
    background_calibration: bool = False  # a long-running process: see Decider.measured

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
        self.decider = Decider(
            store.voiceprints,
            store.settings,
            margin=self.options.margin,
            background=self.options.background_calibration,
        )
        self._reader: VoiceReader | None = None

    @classmethod
    def open(
        cls,
        home: str | os.PathLike | None = None,
        *,
        store: str | os.PathLike | None = None,
        model: str | None = None,
        device: str = "cpu",
        options: Options | None = None,
    ) -> SpeakerID:
        """Open the store in ``home`` or at ``store`` (a folder or ``postgresql://`` URL); see
        :func:`store_location` for the defaults."""
        return cls(open_store(store_location(home, store)), model=model, device=device, options=options)

    def close(self) -> None:
        self.decider.close()  # a background measurement finishes (and is stored) first
        self.store.close()

    def __enter__(self) -> SpeakerID:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the parts ---------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        return self.reader.embedder

    @property
    def reader(self) -> VoiceReader:
        """The clip → vector path (decode, speech, embedding) with this instance's options."""
        if self._reader is None:
            embedder = load_embedder(self.model_spec, device=self.device)
            self.store.voiceprints.check_model(embedder.model_id, embedder.dimension)
            self._reader = VoiceReader(
                embedder, max_seconds=self.options.max_seconds, speech_only=self.options.speech_only
            )
        return self._reader

    @property
    def profiles(self) -> Profiles:
        return self.decider.profiles

    # -- the threshold (the decider's) ---------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """The open-set decision threshold: set by hand, else calibrated on the enrolled population."""
        return self.decider.threshold

    def set_threshold(self, value: float | None) -> None:
        self.decider.set_threshold(value)

    @property
    def far(self) -> float:
        return self.decider.far

    def set_far(self, far: float | None) -> None:
        self.decider.set_far(far)

    def calibration(self) -> Calibration:
        return self.decider.calibration()

    def measured(self) -> Calibration:
        return self.decider.measured()

    def threshold_for(self, far: float, *, comparisons: int = 1, prior: float = DEFAULT_THRESHOLD) -> float:
        return self.decider.threshold_for(far, comparisons=comparisons, prior=prior)

    # -- voices in ---------------------------------------------------------------------------------
    def read(self, audio: AudioInput, name: str | None = None, *, min_speech: float | None = None) -> Voice:
        """One clip through the clip → vector path, refusing it with under ``min_speech`` s of speech."""
        need = self.options.min_speech if min_speech is None else validate.seconds("min_speech", min_speech)
        return self.reader.read(audio, name, min_speech=need)

    def embed(
        self, audio: AudioInput, name: str | None = None, *, min_speech: float | None = None
    ) -> tuple[np.ndarray, Speech]:
        """``(embedding, speech)`` for one clip (see :meth:`read`)."""
        voice = self.read(audio, name, min_speech=min_speech)
        return voice.vector, voice.speech

    def enroll(
        self,
        name: str,
        clips,
        *,
        replace: bool = False,
        append: bool = False,
        metadata: dict | None = None,
        strict: bool = False,
        skip_bad: bool = False,
        min_speech: float = MIN_TOTAL_SPEECH,
        min_clip_speech: float = MIN_CLIP_SPEECH,
        labels: list[str | None] | None = None,
        allow_similar: bool = False,
    ) -> EnrollResult:
        """Enroll ``name`` from clips (paths, folders, bytes or ``(samples, rate)`` pairs).

        Every clip is read and checked before anything is written (see :mod:`speakerid.flows.enrollment`);
        ``skip_bad`` leaves failing clips out instead of refusing the enrollment; ``allow_similar``
        enrolls a voice that is an enrolled one again (a second name, a reversed or re-timed copy:
        refused by default, see :mod:`speakerid.flows.near_copy`).
        """
        if replace and append:
            raise UsageError("choose one of append (add clips) and replace (start over)")
        if metadata is not None and not isinstance(metadata, dict):
            raise UsageError(f"metadata must be a dict, not {type(metadata).__name__}")
        limits = Limits(
            min_speech=validate.seconds("min_speech", min_speech),
            min_clip_speech=validate.seconds("min_clip_speech", min_clip_speech),
        )
        job = Enrollment(
            self.store.voiceprints,
            self.reader,
            self.decider,
            limits=limits,
            skip_bad=skip_bad,
            strict=strict,
            allow_similar=allow_similar,
            audit=self.store.audit,
        )
        mode = "replace" if replace else "append" if append else "new"
        result = job.run(name, clips, mode=mode, metadata=metadata, labels=labels)
        self.decider.measured()  # the population changed: measure it again now (even under a hand-set threshold)
        return result

    def enroll_turns(
        self,
        name: str,
        recording: str | os.PathLike | tuple[np.ndarray, int],
        *,
        rttm: str | os.PathLike | None = None,
        label: str | None = None,
        spans: list[tuple[float, float]] | None = None,
        **options,
    ) -> EnrollResult:
        """Enroll ``name`` from their turns in a recording (a file, or a decoded ``(samples, rate)``
        pair): the turns an RTTM file gives ``label`` (``rttm`` + ``label``), or hand-picked ``spans``
        of seconds (``(start, end)`` or ``"START-END"``). Turns are joined in order into
        clips of about :data:`TURN_CLIP` seconds (a turn is often shorter than a clip needs), and go
        through the usual gates; ``options`` are :meth:`enroll`'s."""
        if (rttm is None) == (spans is None) or (rttm is not None and not label):
            raise UsageError("give the turns: rttm and label, or spans")
        if rttm is not None:
            stem = "" if isinstance(recording, tuple) else Path(os.fsdecode(recording)).stem
            chosen = turns_of(read_rttm(Path(rttm)), stem, label, os.fsdecode(rttm))
        else:
            if not spans:
                raise UsageError("give at least one span")
            chosen = [as_span(s) for s in spans]
        clips, labels = turn_clips(recording, chosen)
        try:
            return self.enroll(name, clips, labels=labels, **options)
        except EnrollmentError as exc:
            held = sum(b - a for a, b in chosen)
            raise EnrollmentError(
                f"{exc} (the {len(chosen)} turns hold {held:.1f} s of audio; pick more turns, lower --min-speech, "
                "or leave stretches with too little speech out with --skip-bad)"
            ) from None

    # -- questions ---------------------------------------------------------------------------------
    def identify(
        self, audio: AudioInput, *, top_k: int = 5, threshold: float | None = None, name: str | None = None
    ) -> Identification:
        """Who is speaking: a speaker, or ``None`` (unknown) when no one scores high enough."""
        top_k = validate.count("top_k", top_k, low=1, high=1000)
        threshold = self.decider.threshold if threshold is None else validate.threshold(threshold)
        voice = self.read(audio, name)
        return self.decider.identify(
            voice.vector,
            threshold=threshold,
            top_k=top_k,
            speech_seconds=voice.speech.seconds,
            model=self.embedder.model_id,
        )

    def verify(
        self,
        speaker: str,
        audio: AudioInput,
        *,
        threshold: float | None = None,
        far: float | None = None,
        name: str | None = None,
    ) -> Verification:
        """Is this ``speaker``? Accepted when the score against their profile reaches the threshold:
        ``threshold`` (a cosine), else the one for a per-comparison false-accept rate ``far``, else
        the store's."""
        self.decider.verification_threshold(threshold=threshold, far=far)  # bad values are refused first
        self.decider.profile(self.decider.claimed(speaker))  # an unknown claim is said before the audio is read
        voice = self.read(audio, name)
        return self.decider.verify(
            voice.vector,
            speaker,
            threshold=threshold,
            far=far,
            speech_seconds=voice.speech.seconds,
            model=self.embedder.model_id,
        )

    def timeline(
        self,
        audio: AudioInput,
        *,
        threshold: float | None = None,
        min_turn: float = DEFAULT_MIN_TURN,
        name: str | None = None,
        progress=None,
    ) -> Timeline:
        """Who spoke when in a multi-speaker recording: turns labelled with enrolled names or
        ``unknown-N`` (see :mod:`speakerid.flows.timeline`). Long recordings are read a block at a time."""
        threshold = self.decider.threshold if threshold is None else validate.threshold(threshold)
        min_turn = validate.seconds("min_turn", min_turn, high=60)
        names, profiles = self.decider.profiles.matrix()
        embedder = self.embedder
        return build_timeline(
            embedder.embed_equal,
            names,
            profiles,
            threshold,
            audio,
            name=name,
            model=embedder.model_id,
            min_turn=min_turn,
            progress=progress,
        )

    @property
    def archive(self) -> Archive:
        """Timelines kept across recordings and the unknown voices in them (:mod:`speakerid.apps.archive`):
        ``sid.archive.add(recording)``, ``.voices()``, ``.name("unknown-3", "alice")``, ``.erase("unknown-3")``."""
        return Archive(self)

    def stream(
        self,
        sample_rate: int = 16_000,
        mode: str = "identify",
        *,
        claim: str | None = None,
        threshold: float | None = None,
        known_claims_only: bool = True,
    ) -> Stream:
        """Decisions while audio arrives: ``stream.feed(samples) -> [Event]``, ``stream.close() -> Event``
        (see :mod:`speakerid.flows.streaming`). ``mode``: ``"identify"`` or ``"verify"`` (with ``claim``);
        for doors, ``AccessControl(sid).stream(resource)``."""
        if mode == "access":
            raise UsageError("an access stream needs the access rules: AccessControl(sid).stream(resource, claim=...)")
        return Stream(
            self.embedder,
            self.decider,
            sample_rate=sample_rate,
            mode=mode,
            claim=claim,
            threshold=threshold,
            known_claims_only=known_claims_only,
        )

    def enroll_stream(self, name: str | None, sample_rate: int = 16_000, **options) -> LiveEnrollment:
        """Enrollment while someone speaks: ``live.feed(samples) -> [Progress]`` (speech so far,
        agreement, expected accept rate, advice), then ``live.close()`` enrolls ``name`` from the
        speech heard, through :meth:`enroll`'s gates (``options`` are its options), and returns the
        :class:`EnrollResult`. With ``name=None`` nothing is written: ``close()`` returns the last
        report (see :mod:`speakerid.flows.live_enrollment`)."""
        if name is not None:
            name = speaker_name(name)  # a bad name fails before anyone speaks

        def finish(clips):
            if name is None:
                return live.report()
            if not clips:
                need = options.get("min_speech", MIN_TOTAL_SPEECH)
                raise InsufficientSpeechError(f"the stream enrolling {name}", got=0.0, need=need)
            return self.enroll(name, clips, **options)

        live = LiveEnrollment(self.embedder, threshold=self.decider.threshold, finish=finish, sample_rate=sample_rate)
        return live

    def classify(self, audio: AudioInput, *, top_k: int | None = None, name: str | None = None) -> list[dict]:
        """How the evidence splits between the enrolled people and "unknown" (see :meth:`Decider.classify`)."""
        return self.decider.classify(self.read(audio, name).vector, top_k)

    # -- the store ---------------------------------------------------------------------------------
    def speakers(self):
        return self.store.voiceprints.speakers()

    def remove(self, name: str) -> None:
        """Erase a speaker's voiceprint: rows, vectors, grants, index entries (see SECURITY.md)."""
        self.store.voiceprints.remove_speaker(name)
        self.decider.measured()
