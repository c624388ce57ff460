"""What goes into the store and what comes out of it: plain, typed records shared by every backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class NewEmbedding:
    """One enrolled clip's embedding, as handed to the store."""

    vector: np.ndarray
    clip_sha256: str | None = None
    speech_seconds: float | None = None


@dataclass(frozen=True)
class Speaker:
    name: str
    clips: int
    speech_seconds: float
    created: str
    updated: str
    metadata: dict = field(default_factory=dict)
    model: str | None = None

    def to_dict(self) -> dict:
        """As JSON shows it: seconds to the hundredth (a sum of clips' seconds is not 51.099999999999994).

        >>> Speaker("a", 2, 51.099999999999994, "t", "t").to_dict()["speech_seconds"]
        51.1
        """
        out = asdict(self)
        out["speech_seconds"] = round(self.speech_seconds, 2)
        return out


@dataclass(frozen=True)
class Hit:
    """One nearest enrolled embedding: its row id, whose it is, and its cosine to the query."""

    embedding_id: int
    speaker: str
    score: float


@dataclass(frozen=True)
class Changes:
    """What happened to the embeddings after a generation: every id added, removed or moved
    (``changed``), and the rows of those that exist now (ids, vectors, speaker names, in id order)."""

    generation: int
    changed: np.ndarray
    ids: np.ndarray
    vectors: np.ndarray
    owners: list[str]


@dataclass(frozen=True)
class Counts:
    """How many speakers (each with a clip at least) and clips a store holds at a generation:
    counted, not read, so that a new process learns whether the calibration still stands
    without reading 10^5 vectors."""

    generation: int
    speakers: int
    clips: int


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str
    name: str
    created: str
    revoked: str | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Resource:
    """A door, phone line or app: who may pass (speakers and ``@groups``) and its own threshold or
    false-accept target, when it has one (``None``: the store's access default)."""

    name: str
    threshold: float | None
    far: float | None
    allowed: list[str]
    created: str


@dataclass(frozen=True)
class Decision:
    """One access decision as the audit log keeps it (never audio, never vectors)."""

    decision_id: str
    time: str
    key_id: str | None
    resource: str
    claim: str | None
    mode: str  # "verify" (a claim), "identify", or "stream-..." for live audio
    allow: bool
    reason: str
    speaker: str | None
    score: float | None
    threshold: float | None
    confidence: float | None = None  # the probability that the decision is right (answers only; not stored)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Event:
    """An entry of the change log: enrollments, removals, settings, keys, grants."""

    time: str
    kind: str
    speaker: str | None
    detail: dict

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IndexState:
    generation: int
    count: int
    kind: str
    model: str
    dimension: int


@dataclass
class CheckReport:
    """What ``speakerid doctor`` prints: the database's state, the derived index's, and any
    disagreement. ``notes`` are harmless (an index one write behind); ``problems`` are not."""

    backend: str
    location: str
    schema_version: int
    generation: int
    model: str | None
    dimension: int | None
    speakers: int
    embeddings: int
    index: IndexState | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "consistent": self.consistent}


@dataclass(frozen=True)
class NewTurn:
    """One turn of a timeline, as handed to the archive: an enrolled ``speaker``'s, or ``voice``'s
    (an archived ``unknown-N``, or any other key for a voice the archive does not know yet)."""

    start: float
    end: float
    vector: np.ndarray
    speaker: str | None = None
    voice: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class ArchivedTurn:
    recording: str  # the recording's path as it was added
    start: float
    end: float
    label: str  # the enrolled name, or unknown-N
    speaker: str | None
    score: float | None

    def to_dict(self) -> dict:
        return {
            "recording": self.recording,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "label": self.label,
            "speaker": self.speaker,
            "score": None if self.score is None else round(self.score, 4),
        }


@dataclass(frozen=True)
class ArchivedVoice:
    """A voice nobody enrolled, the same in every recording it was heard in."""

    label: str  # unknown-N
    seconds: float
    recordings: int
    turns: int
    examples: list[ArchivedTurn]  # its longest turns

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "seconds": round(self.seconds, 2),
            "recordings": self.recordings,
            "turns": self.turns,
            "examples": [t.to_dict() for t in self.examples],
        }


@dataclass(frozen=True)
class ArchivedRecording:
    path: str
    sha256: str
    duration: float
    added: str
