"""Enrollment: decode, gate, embed every clip, and only then write the speaker in one transaction.

One bad clip fails the whole enrollment, names the clip, and leaves the store untouched.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from tqdm import tqdm

from speakerid.audio import DEFAULT_MAX_SECONDS, load_audio
from speakerid.embedder import Embedder
from speakerid.errors import InsufficientSpeechError
from speakerid.prefetch import prefetched
from speakerid.scoring import Profiles
from speakerid.vad import extract_speech
from store import NewEmbedding, SpeakerExistsError, Store

from .clips import expand_clips
from .errors import EnrollmentError
from .quality import MIN_CONSISTENCY, check_consistency, check_level

log = logging.getLogger(__name__)

MIN_TOTAL_SPEECH = 10.0  # seconds; Azure asks for 20 s, AWS Voice ID for 30 s
MIN_CLIP_SPEECH = 1.0  # shorter clips may identify, never enroll
PROGRESS_FROM = 4  # clips


@dataclass(frozen=True)
class Clip:
    """One clip, checked and embedded, not yet written."""

    source: str
    vector: np.ndarray
    sha256: str
    speech_seconds: float


@dataclass(frozen=True)
class EnrollResult:
    speaker: str
    clips: int  # clips added by this enrollment
    speech_seconds: float  # net speech of those clips
    model: str
    total_clips: int  # clips the speaker now has
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "clips": self.clips, "speech_seconds": round(self.speech_seconds, 2),
                "model": self.model, "total_clips": self.total_clips, "warnings": self.warnings}


def enroll_speaker(
    store: Store,
    embedder: Embedder,
    profiles: Profiles,
    name: str,
    clips: list,
    *,
    replace: bool = False,
    append: bool = False,
    metadata: dict | None = None,
    strict: bool = False,
    threshold: float,
    min_speech: float = MIN_TOTAL_SPEECH,
    min_clip_speech: float = MIN_CLIP_SPEECH,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    names: list[str] | None = None,
) -> EnrollResult:
    """``names``: how to call each clip in messages when clips are bytes (e.g. upload file names)."""
    name = check_name(name)
    if replace and append:
        raise EnrollmentError("choose one of --append (add clips) and --replace (start over)")
    exists = name in store
    if exists and not (replace or append):
        raise SpeakerExistsError(name)
    store.check_model(embedder.model_id, embedder.dimension)

    sources = expand_clips(list(clips))
    labels = names if names is not None and len(names) == len(sources) else [None] * len(sources)
    decode = partial(_decode_clip, min_clip_speech=min_clip_speech, max_seconds=max_seconds)
    decoded = prefetched(decode, zip(sources, labels))  # the next clips decode while this one embeds
    prepared = [Clip(source=audio.source, vector=embedder.embed([speech.samples])[0], sha256=sha256,
                     speech_seconds=speech.seconds)
                for audio, speech, sha256 in tqdm(decoded, total=len(sources), desc=f"enrolling {name}", unit="clip",
                                                  disable=True if len(sources) < PROGRESS_FROM else None)]
    _check_duplicates(prepared)
    vectors = np.stack([c.vector for c in prepared])
    check_consistency([c.source for c in prepared], vectors)

    existing = store.speaker(name) if exists and append else None
    new_speech = sum(c.speech_seconds for c in prepared)
    speech = new_speech + (existing.speech_seconds if existing else 0.0)
    if speech < min_speech:
        raise EnrollmentError(f"{name}: {speech:.1f} s of speech in total, need at least {min_speech:g} s; "
                              "add more or longer clips")
    if existing is not None:
        _check_against_existing(name, profiles.vector(name), prepared, store)

    warnings = _duplicate_voice(name, vectors, profiles, threshold, strict)
    mode = "replace" if replace else "append" if append else "new"
    speaker = store.add_speaker(
        name,
        [NewEmbedding(c.vector, clip_sha256=c.sha256, speech_seconds=c.speech_seconds) for c in prepared],
        model=embedder.model_id, mode=mode, metadata=metadata,
    )
    return EnrollResult(speaker=name, clips=len(prepared), speech_seconds=new_speech,
                        model=embedder.model_id, total_clips=speaker.clips, warnings=warnings)


def _decode_clip(source_and_name: tuple, *, min_clip_speech: float, max_seconds: float):
    """Everything before the model: decode, find the speech, check the level, hash. Thread-safe."""
    source, name = source_and_name
    audio = load_audio(source, name, max_seconds=max_seconds)
    try:
        speech = extract_speech(audio, min_speech=min_clip_speech)
    except InsufficientSpeechError as exc:
        raise EnrollmentError(f"{exc}; clips this short can identify, but not enroll") from None
    check_level(audio, speech)
    return audio, speech, _digest(source, audio)


def check_name(name: str) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned or len(cleaned) > 200 or any(ord(ch) < 32 for ch in cleaned):
        raise EnrollmentError(f"invalid speaker name {name!r}: use 1-200 printable characters")
    return cleaned


def _digest(source, audio) -> str:
    if isinstance(source, (str, os.PathLike)):
        h = hashlib.sha256()
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest()
    return hashlib.sha256(audio.samples.tobytes()).hexdigest()


def _check_duplicates(clips: list[Clip]) -> None:
    seen: dict[str, str] = {}
    for clip in clips:
        if clip.sha256 in seen:
            raise EnrollmentError(f"{clip.source}: same audio as {seen[clip.sha256]}; each clip must be a different recording")
        seen[clip.sha256] = clip.source


def _check_against_existing(name: str, profile: np.ndarray | None, clips: list[Clip], store: Store) -> None:
    """Appended clips must sound like the voiceprint they extend, and must not be enrolled already."""
    enrolled = store.clip_digests(name)
    for clip in clips:
        if clip.sha256 in enrolled:
            raise EnrollmentError(f"{clip.source}: this recording is already enrolled for {name}")
        if profile is not None:
            score = float(clip.vector @ profile)
            if score < MIN_CONSISTENCY:
                raise EnrollmentError(f"{clip.source}: voice differs from {name}'s enrolled voice (similarity "
                                      f"{score:.2f}, need {MIN_CONSISTENCY:.2f}); probably someone else")


def _duplicate_voice(name: str, vectors: np.ndarray, profiles: Profiles, threshold: float, strict: bool) -> list[str]:
    centroid = vectors.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    found = profiles.rank(centroid, top_k=1, exclude=name)
    if not found or found[0].score < threshold:
        return []
    message = (f"the voice of {name} matches the enrolled speaker {found[0].speaker} "
               f"(score {found[0].score:.2f} >= threshold {threshold:g}); same person under two names?")
    if strict:
        raise EnrollmentError(message + " (refused: --strict)")
    log.warning(message)
    return [message]
