"""What a store is to the rest of speakerid: a handle with six narrow roles.

A new backend implements the roles one at a time, each small enough to read in one sitting:

- :class:`Voiceprints`: speakers, their clip embeddings, the model they are bound to, the
  generation that moves with every write identification sees, and search;
- :class:`AccessPolicy`: API keys, resources, grants and groups;
- :class:`AuditLog`: lockout attempts, access decisions and the change log;
- :class:`Archive`: timelines kept across recordings, and the voices nobody enrolled in them;
- :class:`Settings`: small JSON values (the threshold, the calibration);
- :class:`Maintenance`: schema version, the derived index, checking and repairing.

:func:`store.open_store` picks a backend from a location; the handle (:class:`Store`) only opens,
closes and holds the roles. Invariants every backend keeps: each write is one transaction; a write
that changes what identification sees moves :attr:`Voiceprints.generation`; a store is bound to
the model of its first enrollment; removing a speaker erases their vectors (what that means on
disk: each backend's docstring and SECURITY.md). Names follow :mod:`store.names`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from .index import VectorIndex
from .records import (
    ApiKey,
    ArchivedRecording,
    ArchivedTurn,
    ArchivedVoice,
    Changes,
    CheckReport,
    Counts,
    Decision,
    Event,
    Hit,
    NewEmbedding,
    NewTurn,
    Resource,
    Speaker,
)


class Voiceprints(ABC):
    """Speakers and their clip embeddings: what identification is built from."""

    @property
    @abstractmethod
    def generation(self) -> int:
        """Moves with every write that changes what identification sees."""

    @property
    @abstractmethod
    def model(self) -> str | None:
        """The model id every embedding was made with (``None`` before the first enrollment)."""

    @property
    @abstractmethod
    def dimension(self) -> int | None: ...

    @abstractmethod
    def check_model(self, model: str, dimension: int | None) -> None:
        """Raise :class:`ModelMismatchError` if the store holds another model's embeddings."""

    @abstractmethod
    def add_speaker(
        self,
        name: str,
        embeddings: Sequence[NewEmbedding],
        *,
        model: str,
        mode: str = "new",
        metadata: dict | None = None,
    ) -> Speaker:
        """Write a speaker's embeddings in one transaction. ``mode``: ``"new"`` (the name must be
        free), ``"append"`` (add clips, creating the speaker if needed; a clip whose digest is
        already enrolled for them is refused) or ``"replace"`` (drop the old clips first)."""

    @abstractmethod
    def import_speakers(self, speakers: dict[str, Sequence[NewEmbedding]], *, model: str) -> int:
        """Add many new speakers in one transaction (all or nothing)."""

    @abstractmethod
    def remove_speaker(self, name: str) -> None:
        """Erase a speaker: rows, vectors, grants, group memberships and index entries."""

    @abstractmethod
    def speaker(self, name: str) -> Speaker: ...

    @abstractmethod
    def speakers(self) -> list[Speaker]: ...

    @abstractmethod
    def __contains__(self, name: object) -> bool: ...

    @abstractmethod
    def display_name(self, name: str) -> str:
        """The name as enrolled (``ALICE`` finds ``alice``); :class:`SpeakerNotFoundError` if none."""

    @abstractmethod
    def clip_digests(self, name: str) -> set[str]:
        """sha256 of every clip enrolled for ``name``."""

    @abstractmethod
    def vectors(self, name: str | Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(embedding ids, vectors, speaker names)`` for one speaker (any spelling of the name),
        the speakers named exactly as enrolled in a list, or all; in id order."""

    @abstractmethod
    def counts(self) -> Counts:
        """The number of speakers and clips, and the generation they were counted at."""

    @abstractmethod
    def changes(self, since: int) -> Changes | None:
        """What the embeddings did after generation ``since`` (a cache catches up from it); ``None``
        when the store's change log does not reach back that far (read everything instead)."""

    @abstractmethod
    def search(self, query: np.ndarray, k: int = 10) -> list[Hit]:
        """The ``k`` enrolled embeddings nearest ``query`` (through the derived index)."""

    @abstractmethod
    def search_many(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]: ...


class AccessPolicy(ABC):
    """API keys (their secrets are hashed by the caller; the store never sees one), resources,
    grants and groups."""

    @abstractmethod
    def add_key(self, key_id: str, secret_hash: str, role: str, name: str = "") -> ApiKey: ...

    @abstractmethod
    def key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key's record and stored hash, revoked or not."""

    @abstractmethod
    def keys(self) -> list[ApiKey]: ...

    @abstractmethod
    def revoke_key(self, key_id: str) -> None: ...

    @abstractmethod
    def ever_had_keys(self) -> bool:
        """Once a key was created, the service requires one for ever (revoked keys stay as rows)."""

    @abstractmethod
    def grant(self, principal: str, resource: str) -> None:
        """Allow a speaker (``alice``) or a group (``@staff``) through ``resource``, creating it."""

    @abstractmethod
    def revoke_grant(self, principal: str, resource: str) -> None: ...

    @abstractmethod
    def set_resource_limits(self, resource: str, *, threshold: float | None = None, far: float | None = None) -> None:
        """A resource's own threshold or false-accept target (both ``None``: the store default)."""

    @abstractmethod
    def resource(self, name: str) -> Resource:
        """Raise :class:`UnknownResourceError` if it does not exist."""

    @abstractmethod
    def resources(self) -> list[Resource]: ...

    @abstractmethod
    def add_to_group(self, group: str, speaker: str) -> None: ...

    @abstractmethod
    def remove_from_group(self, group: str, speaker: str) -> bool:
        """False when the speaker was not a member."""

    @abstractmethod
    def groups(self) -> dict[str, list[str]]: ...

    @abstractmethod
    def allowed(self, speaker: str, resource: str) -> bool: ...


class AuditLog(ABC):
    """Lockout attempts, access decisions, and the change log of everything else."""

    @abstractmethod
    def begin_attempt(self, subject: str, *, attempts: int, window_seconds: float) -> tuple[int | None, str | None]:
        """Reserve an attempt for ``subject`` atomically: ``(attempt id, None)``, or ``(None, locked
        until)`` when its last ``attempts`` attempts in the window (pending ones included) were
        all denials."""

    @abstractmethod
    def finish_attempt(self, attempt_id: int, outcome: str) -> None:
        """``outcome``: ``"allow"`` (resets the count), ``"deny"`` (counts) or ``"refused"`` (does not)."""

    @abstractmethod
    def record_decision(self, decision: Decision) -> None: ...

    @abstractmethod
    def decisions(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        resource: str | None = None,
        allow: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Decision]:
        """Audit entries, oldest first, filtered and paged."""

    @abstractmethod
    def log_event(self, kind: str, speaker: str | None = None, /, **detail: Any) -> None: ...

    @abstractmethod
    def events(self, since: str | None = None, kind: str | None = None) -> list[Event]: ...


class Archive(ABC):
    """Timelines of many recordings, kept: each turn is an enrolled speaker's or an unknown voice's
    (``unknown-N``, numbered once and never reused), with the turn's vector, so a stranger heard
    again in another recording is recognised, and naming them relabels every recording at once.
    Erasing a speaker or a voice erases their turns, vectors included."""

    @abstractmethod
    def add_recording(self, path: str, sha256: str, duration: float, turns: Sequence[NewTurn]) -> dict[str, str]:
        """Keep a recording's turns (replacing what was kept for the same content) in one transaction;
        returns each new voice key's ``unknown-N``."""

    @abstractmethod
    def voice_vectors(self) -> tuple[list[str], np.ndarray]:
        """Each unknown voice and its centre (its turns' vectors weighted by duration, L2-normalised)."""

    @abstractmethod
    def voices(self, examples: int = 3) -> list[ArchivedVoice]:
        """The unknown voices, most speech first, each with its ``examples`` longest turns."""

    @abstractmethod
    def turns(self, *, recording: str | None = None, voice: str | None = None) -> list[ArchivedTurn]:
        """Kept turns in recording and time order: all, one recording's (its path or sha256) or one voice's."""

    @abstractmethod
    def recordings(self) -> list[ArchivedRecording]: ...

    @abstractmethod
    def name_voice(self, voice: str, speaker: str) -> int:
        """The voice's turns become ``speaker``'s (enrolled by then) and the voice is gone; the number of turns."""

    @abstractmethod
    def remove_voice(self, voice: str) -> int:
        """Erase a voice and its turns; the number of turns erased."""


class Settings(ABC):
    """Small JSON values kept with the store (the hand-set threshold, the last calibration)."""

    @abstractmethod
    def get(self, key: str, default: Any = None) -> Any: ...

    @abstractmethod
    def set(self, key: str, value: Any) -> None:
        """Store a JSON value (``None`` deletes the setting)."""


class Maintenance(ABC):
    """The schema, the derived index, and whether everything agrees."""

    migrations_applied: list[int]  # schema versions applied when this store was opened

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def index(self) -> VectorIndex:
        """The derived index, caught up with the database first."""

    @abstractmethod
    def rebuild_index(self) -> VectorIndex:
        """Throw every copy of the index away and build it again from the database."""

    @abstractmethod
    def check(self) -> CheckReport:
        """Compare what is derived with the database, without repairing anything."""

    @abstractmethod
    def repair(self) -> CheckReport:
        """Rebuild what is derived; the report after."""


class Store(ABC):
    """A voiceprint database, opened by :func:`store.open_store`. Thread-safe; many processes may share one.

    >>> import tempfile, numpy as np
    >>> from store import NewEmbedding, open_store
    >>> with open_store(tempfile.mkdtemp()) as store:
    ...     voice = np.ones(4, dtype=np.float32) / 2
    ...     _ = store.voiceprints.add_speaker("alice", [NewEmbedding(voice)], model="demo")
    ...     [s.name for s in store.voiceprints.speakers()], store.voiceprints.search(voice, k=1)[0].speaker
    (['alice'], 'alice')
    """

    backend: str
    location: str
    voiceprints: Voiceprints
    policy: AccessPolicy
    audit: AuditLog
    archive: Archive
    settings: Settings
    maintenance: Maintenance

    @abstractmethod
    def close(self) -> None:
        """Release connections (and, on SQLite, fold the write-ahead log into the database)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
