"""Name a voice once, recognised across an archive of recordings.

``speakerid timeline`` over many recordings keeps each recording's turns in the store
(:class:`store.roles.Archive`). A voice nobody enrolled becomes ``unknown-N`` the first time it is
heard and stays ``unknown-N`` in every later recording: each stranger of a new timeline is compared
with the archived voices (the centre of all their turns) and is that voice when the two reach the
store's calibrated threshold, the same test ``identify`` applies to a clip. ``speakerid name
unknown-17 alice`` then enrolls alice from those turns (read again from the recordings, through the
usual gates) and every kept timeline says alice from then on.

What is kept: per turn its times, its label and its 192-d vector (never audio); per recording its
path, duration and content sha256. Erasing alice (``speakerid remove``) or a voice
(``speakerid voices --erase unknown-17``) erases their turns, vectors included.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speakerid.base.digest import sha256_file
from speakerid.base.errors import AudioError, EnrollmentError
from speakerid.decide.scoring import centroid
from speakerid.flows.timeline import Timeline
from speakerid.flows.turns import turn_clips
from store.errors import RecordingNotFoundError, VoiceNotFoundError
from store.records import ArchivedRecording, ArchivedTurn, ArchivedVoice, NewTurn

if TYPE_CHECKING:
    from speakerid.api import SpeakerID
    from speakerid.flows.enrollment import EnrollResult


class Archive:
    """Kept timelines and the voices in them, on one :class:`~speakerid.api.SpeakerID`'s store."""

    def __init__(self, sid: SpeakerID):
        self.sid = sid
        self.kept = sid.store.archive

    def add(self, recording: str | os.PathLike, timeline: Timeline | None = None, **options) -> Timeline:
        """Keep ``recording``'s timeline (made now with ``options`` unless given) and return it with
        each stranger as their archived ``unknown-N``. The same audio added again replaces its turns."""
        path = Path(os.fsdecode(recording)).resolve()
        if not path.is_file():
            raise AudioError(
                os.fsdecode(recording),
                "not a file (only recordings on disk can be kept: naming a voice reads them again)",
            )
        if timeline is None:
            timeline = self.sid.timeline(path, **options)
        labels, vectors = self.kept.voice_vectors()
        strangers = defaultdict(list)
        for s in timeline.segments:
            if s.speaker is None:
                strangers[s.label].append(s)
        same = {}
        for label, segments in strangers.items():
            centre = centroid(np.stack([s.vector * (s.end - s.start) for s in segments]))
            if len(labels):
                scores = vectors @ centre
                best = int(np.argmax(scores))
                if scores[best] >= self.sid.decider.threshold:
                    same[label] = labels[best]
        new = {label: f"new {label}" for label in strangers if label not in same}  # a key the store cannot mistake
        turns = [
            NewTurn(s.start, s.end, s.vector, speaker=s.speaker, score=s.score)
            if s.speaker is not None
            else NewTurn(s.start, s.end, s.vector, voice=same.get(s.label) or new[s.label], score=s.score)
            for s in timeline.segments
        ]
        created = self.kept.add_recording(str(path), sha256_file(path), timeline.duration, turns)
        final = {**{label: created[key] for label, key in new.items()}, **same}
        segments = [
            dataclasses.replace(s, label=final.get(s.label, s.label)) if s.speaker is None else s
            for s in timeline.segments
        ]
        return dataclasses.replace(timeline, segments=segments)

    def voices(self, examples: int = 3) -> list[ArchivedVoice]:
        """The unknown voices, most speech first."""
        return self.kept.voices(examples)

    def timeline(self, recording: str | os.PathLike) -> list[ArchivedTurn]:
        """A kept recording's turns as they read now (named voices under their names)."""
        key = os.fsdecode(recording)
        if Path(key).exists():
            key = str(Path(key).resolve())
        turns = self.kept.turns(recording=key)
        if not turns and not any(r.path == key or r.sha256 == key for r in self.kept.recordings()):
            raise RecordingNotFoundError(os.fsdecode(recording))
        return turns

    def recordings(self) -> list[ArchivedRecording]:
        return self.kept.recordings()

    def name(self, voice: str, name: str, **options) -> EnrollResult:
        """Enroll ``name`` from ``voice``'s turns in every recording (the recordings are read again,
        so they must still be where they were, unchanged) and relabel the voice's turns as ``name``.
        ``options`` are :meth:`~speakerid.api.SpeakerID.enroll`'s (``append=True`` adds to someone
        enrolled). Nothing changes if the enrollment is refused."""
        turns = self.kept.turns(voice=voice)
        if not turns:
            raise VoiceNotFoundError(voice)
        sha = {r.path: r.sha256 for r in self.kept.recordings()}
        clips, labels = [], []
        by_recording: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for t in turns:
            by_recording[t.recording].append((t.start, t.end))
        for path, spans in by_recording.items():
            if not Path(path).is_file() or sha256_file(path) != sha[path]:
                raise EnrollmentError(
                    f"{path}: moved or changed since it was kept, so {voice}'s turns in it cannot be read "
                    "(put it back, or erase the voice)"
                )
            more, more_labels = turn_clips(path, spans)
            clips += more
            labels += more_labels
        result = self.sid.enroll(name, clips, labels=labels, **options)
        self.kept.name_voice(voice, result.speaker)
        return result

    def erase(self, voice: str) -> int:
        """Erase an unknown voice and its turns (vectors included); the number of turns erased."""
        return self.kept.remove_voice(voice)
