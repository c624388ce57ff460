"""Enrollment: read every clip, hold it to the quality gates, and only then write the speaker in one
transaction.

By default one bad clip fails the whole enrollment, names the clip, and leaves the store exactly as
it was. With ``skip_bad`` (``enroll-speaker --skip-bad``) clips that fail a gate (unreadable, no or
too little speech, clipped, too quiet, the same file twice, another voice) are left out and
reported with their reason; the enrollment is refused only when what passes is not enough. Real
interview folders need this: one clip without speech, one of 0.3 s or one with another voice
would otherwise refuse the whole speaker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speakerid.base.digest import sha256_clip
from speakerid.base.errors import EnrollmentError, InsufficientSpeechError, SpeakerIDError, UsageError
from speakerid.base.prefetch import prefetched
from speakerid.base.progress import progress
from speakerid.decide.decider import Decider
from speakerid.decide.scoring import centroid
from speakerid.flows.near_copy import find_near_copy
from speakerid.flows.quality import (
    MIN_CONSISTENCY,
    consistency,
    feedback,
    level_problem,
    minimum_consistency,
    odd_one_out,
)
from speakerid.voice.audio import AudioInput, describe, is_sample_pair
from speakerid.voice.reader import VoiceReader
from store import AuditLog, NewEmbedding, SpeakerExistsError, Voiceprints, speaker_name

log = logging.getLogger(__name__)

MIN_TOTAL_SPEECH = 10.0  # seconds; Azure asks for 20 s, AWS Voice ID for 30 s
MIN_CLIP_SPEECH = 1.0  # shorter clips may identify, never enroll
PROGRESS_FROM = 4  # clips
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"}
MODES = ("new", "append", "replace")


@dataclass(frozen=True)
class Clip:
    """One clip, checked and embedded, not yet written."""

    source: str
    vector: np.ndarray
    sha256: str
    speech_seconds: float
    speech: np.ndarray | None = None  # the speech at 16 kHz, to hear it changed (near_copy); None on Ray


@dataclass(frozen=True)
class Skipped:
    clip: str
    reason: str

    def to_dict(self) -> dict:
        return {"clip": self.clip, "reason": self.reason}


@dataclass(frozen=True)
class EnrollResult:
    speaker: str
    clips: int  # clips added by this enrollment
    speech_seconds: float  # net speech of those clips
    model: str
    total_clips: int  # clips the speaker now has
    warnings: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    quality: dict = field(default_factory=dict)  # how good the voiceprint is, and what would improve it

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "clips": self.clips,
            "speech_seconds": round(self.speech_seconds, 2),
            "model": self.model,
            "total_clips": self.total_clips,
            "warnings": self.warnings,
            "skipped": [s.to_dict() for s in self.skipped],
            "quality": self.quality,
        }


@dataclass
class Limits:
    min_speech: float = MIN_TOTAL_SPEECH  # over all clips (and the speaker's earlier clips, when appending)
    min_clip_speech: float = MIN_CLIP_SPEECH


def as_clip_list(clips: object) -> list:
    """One clip or many: a path, bytes or ``(samples, rate)`` is one; a list or tuple of them is many."""
    if isinstance(clips, (str, os.PathLike, bytes, bytearray)) or is_sample_pair(clips):
        return [clips]
    if isinstance(clips, (list, tuple)):
        return list(clips)
    raise UsageError(f"clips must be a path, bytes, (samples, rate) or a list of them, not {type(clips).__name__}")


def audio_in_folder(folder: Path) -> list[Path]:
    """A folder's audio files (by suffix, in every subfolder), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def expand_clips(items: Sequence) -> list:
    """Files stay as they are (bad ones fail later, named); folders give their audio files, sorted."""
    out: list = []
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(os.fsdecode(item)).is_dir():
            folder = Path(os.fsdecode(item))
            found = audio_in_folder(folder)
            if not found:
                raise EnrollmentError(
                    f"{describe(item)}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_SUFFIXES))})"
                )
            out.extend(found)
        else:
            out.append(item)
    if not out:
        raise EnrollmentError("no clips given")
    return out


def read_clip(reader: VoiceReader, limits: Limits, source: AudioInput, label: str | None = None) -> tuple:
    """One enrollment clip through the per-clip gates, before the model: ``(audio, speech, sha256)``,
    or ``(clip, reason, error)`` when a gate refuses it. Thread-safe; Ray workers run it too."""
    try:
        audio, speech = reader.decode(source, label, min_speech=limits.min_clip_speech)
    except InsufficientSpeechError as exc:
        return describe(source, label), f"{exc.reason}; clips this short can identify, but not enroll", None
    except SpeakerIDError as exc:
        return describe(source, label), getattr(exc, "reason", None) or str(exc), exc
    problem = level_problem(audio, speech)
    if problem:
        return audio.source, problem, None
    return audio, speech, sha256_clip(source, audio.samples)


SAME_PERSON_WARNING = 0.55  # different people's profiles on mini-voxceleb1: at most 0.43


class Enrollment:
    """One enrollment of one speaker; :meth:`run` does it. See :meth:`speakerid.SpeakerID.enroll`."""

    def __init__(
        self,
        voiceprints: Voiceprints,
        reader: VoiceReader,
        decider: Decider,
        *,
        limits: Limits | None = None,
        skip_bad: bool = False,
        strict: bool = False,
        allow_similar: bool = False,
        audit: AuditLog | None = None,
    ):
        self.voiceprints, self.reader, self.decider = voiceprints, reader, decider
        self.allow_similar, self.audit = allow_similar, audit
        self.profiles = decider.profiles
        self.limits = limits or Limits()
        self.skip_bad, self.strict = skip_bad, strict
        self.skipped: list[Skipped] = []

    def run(
        self,
        name: str,
        clips: object,
        *,
        mode: str = "new",
        metadata: dict | None = None,
        labels: Sequence[str | None] | None = None,
    ) -> EnrollResult:
        """``labels``: how to call each clip in messages when clips are bytes (e.g. upload file names)."""
        name, mode = self.begin(name, mode)
        sources = expand_clips(as_clip_list(clips))
        names = list(labels) if labels is not None and len(labels) == len(sources) else [None] * len(sources)
        decoded = prefetched(self.decode, zip(sources, names))  # the next clips decode while this one embeds
        with progress(
            len(sources), desc=f"enrolling {name}", unit="clip", enabled=len(sources) >= PROGRESS_FROM
        ) as bar:
            read = []
            for item in decoded:
                read.append(self.embed(item))
                bar.update(1)
        return self.finish(name, read, mode=mode, metadata=metadata)

    def begin(self, name: str, mode: str) -> tuple[str, str]:
        """Check the name and mode before any clip is read: ``(name as enrolled, mode)``."""
        name = speaker_name(name)
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        exists = name in self.voiceprints
        if exists and mode == "new":
            raise SpeakerExistsError(name, self.voiceprints.display_name(name))
        embedder = self.reader.embedder
        self.voiceprints.check_model(embedder.model_id, embedder.dimension)
        return (self.voiceprints.display_name(name) if exists else name), mode

    def decode(self, item: tuple[AudioInput, str | None]) -> tuple:
        """Everything before the model for one clip (thread-safe); see :func:`read_clip`."""
        return read_clip(self.reader, self.limits, *item)

    def embed(self, decoded: tuple) -> Clip | Skipped:
        """A decoded clip embedded, or the reason it was refused (raised unless ``skip_bad``)."""
        if isinstance(decoded[0], str):
            clip, reason, error = decoded
            if not self.skip_bad:
                raise error or EnrollmentError(f"{clip}: {reason}")
            return Skipped(clip, reason)
        audio, speech, sha256 = decoded
        return Clip(
            source=audio.source,
            vector=self.reader.embed(speech),
            sha256=sha256,
            speech_seconds=speech.seconds,
            speech=speech.samples,
        )

    def finish(
        self, name: str, read: Sequence[Clip | Skipped], *, mode: str = "new", metadata: dict | None = None
    ) -> EnrollResult:
        """The checks across clips, then the one write. ``read``: every clip, read or refused."""
        self.skipped = [r for r in read if isinstance(r, Skipped)]
        prepared = [r for r in read if isinstance(r, Clip)]
        prepared = self._drop_repeats(prepared)
        prepared = self._drop_other_voices(prepared)
        existing = self.voiceprints.speaker(name) if mode == "append" and name in self.voiceprints else None
        if existing is not None:
            prepared = self._fit_existing(name, prepared)
        if not prepared:
            raise EnrollmentError(
                f"{name}: no usable clip; " + "; ".join(f"{s.clip}: {s.reason}" for s in self.skipped)
            )
        new_speech = sum(c.speech_seconds for c in prepared)
        speech = new_speech + (existing.speech_seconds if existing else 0.0)
        if speech < self.limits.min_speech:
            left = f" (after leaving out {len(self.skipped)} clips)" if self.skipped else ""
            raise EnrollmentError(
                f"{name}: {speech:.1f} s of speech in total{left}, need at least "
                f"{self.limits.min_speech:g} s; add more or longer clips"
            )
        vectors = np.stack([c.vector for c in prepared])
        warnings = self._near_copy(name, vectors, prepared) + self._duplicate_voice(name, vectors)
        model = self.reader.embedder.model_id
        speaker = self.voiceprints.add_speaker(
            name,
            [NewEmbedding(c.vector, clip_sha256=c.sha256, speech_seconds=c.speech_seconds) for c in prepared],
            model=model,
            mode=mode,
            metadata=metadata,
        )
        return EnrollResult(
            speaker=speaker.name,
            clips=len(prepared),
            speech_seconds=new_speech,
            model=model,
            total_clips=speaker.clips,
            warnings=warnings,
            skipped=list(self.skipped),
            quality=feedback(vectors, speech, self.decider.threshold),
        )

    # -- the gates ---------------------------------------------------------------------------------
    def _refuse_or_skip(self, clip: str, reason: str) -> None:
        if not self.skip_bad:
            raise EnrollmentError(f"{clip}: {reason}")
        self.skipped.append(Skipped(clip, reason))

    def _drop_repeats(self, clips: list[Clip]) -> list[Clip]:
        seen: dict[str, str] = {}
        kept = []
        for clip in clips:
            if clip.sha256 in seen:
                self._refuse_or_skip(
                    clip.source, f"same audio as {seen[clip.sha256]}; each clip must be a different recording"
                )
                continue
            seen[clip.sha256] = clip.source
            kept.append(clip)
        return kept

    def _drop_other_voices(self, clips: list[Clip]) -> list[Clip]:
        """Clips whose voice disagrees with the rest are probably someone else."""
        if len(clips) < 2:
            return clips
        vectors = np.stack([c.vector for c in clips])
        if not self.skip_bad:
            scores = consistency(vectors)
            bar = minimum_consistency(len(clips))
            if len(clips) == 2 and scores[0] < bar:
                raise EnrollmentError(
                    f"{clips[0].source} and {clips[1].source} do not sound like the same speaker "
                    f"(similarity {scores[0]:.2f}, need {bar:.2f}); enroll from clips of one person"
                )
            odd = sorted((float(s), c.source) for s, c in zip(scores, clips) if s < bar)
            if odd:
                listed = ", ".join(f"{source} ({score:.2f})" for score, source in odd)
                raise EnrollmentError(
                    f"voice differs from the other clips, probably someone else: {listed}; "
                    f"need similarity {bar:.2f}; remove these clips"
                )
            return clips
        kept = list(clips)
        while len(kept) >= 2:  # leave out the worst clip, then look again at the rest
            worst = odd_one_out(np.stack([c.vector for c in kept]))
            if worst is None:
                break
            if worst == -1:
                raise EnrollmentError(
                    f"{kept[0].source} and {kept[1].source} do not sound like the same speaker, "
                    "and no third clip says which one is; enroll from clips of one person"
                )
            score = float(consistency(np.stack([c.vector for c in kept]))[worst])
            self.skipped.append(
                Skipped(
                    kept[worst].source,
                    f"voice differs from the other clips (similarity "
                    f"{score:.2f}, need {minimum_consistency(len(kept)):.2f}); "
                    "probably someone else",
                )
            )
            del kept[worst]
        return kept

    def _fit_existing(self, name: str, clips: list[Clip]) -> list[Clip]:
        """Appended clips must sound like the voiceprint they extend, and must not be enrolled already."""
        enrolled = self.voiceprints.clip_digests(name)
        profile = self.profiles.vector(name)
        kept = []
        for clip in clips:
            if clip.sha256 in enrolled:
                self._refuse_or_skip(clip.source, f"this recording is already enrolled for {name}")
                continue
            score = float(clip.vector @ profile) if profile is not None else 1.0
            if score < MIN_CONSISTENCY:
                self._refuse_or_skip(
                    clip.source,
                    f"voice differs from {name}'s enrolled voice (similarity "
                    f"{score:.2f}, need {MIN_CONSISTENCY:.2f}); probably someone else",
                )
                continue
            kept.append(clip)
        return kept

    def _near_copy(self, name: str, vectors: np.ndarray, clips: list[Clip]) -> list[str]:
        """Refuse an enrolled voice again (a second name, a reversed or re-timed copy), unless allowed."""
        speech = [c.speech for c in clips if c.speech is not None]
        copy = find_near_copy(name, vectors, speech, self.profiles, lambda x: self.reader.embedder.embed([x])[0])
        if copy is None:
            return []
        message = copy.reason(name)
        if not self.allow_similar:
            if self.audit is not None:
                self.audit.log_event(
                    "enroll_refused", None, name=name, like=copy.speaker, how=copy.how, score=round(copy.score, 3)
                )
            raise EnrollmentError(message)
        if self.audit is not None:
            self.audit.log_event(
                "near_copy_allowed", None, name=name, like=copy.speaker, how=copy.how, score=round(copy.score, 3)
            )
        return [f"allowed by an admin: {message}"]

    def _duplicate_voice(self, name: str, vectors: np.ndarray) -> list[str]:
        found = self.profiles.rank(centroid(vectors), top_k=1, exclude=name)
        bar = max(self.decider.threshold, SAME_PERSON_WARNING)  # worth a word: two voices this alike
        if not found or found[0].score < bar:
            return []
        message = (
            f"the voice of {name} matches the enrolled speaker {found[0].speaker} "
            f"(score {found[0].score:.2f} >= {bar:.2f}); same person under two names?"
        )
        if self.strict:
            raise EnrollmentError(message + " (refused: --strict)")
        log.warning(message)
        return [message]
