"""Exceptions of the whole project, rooted here in the lowest layer.

:class:`SpeakerIDError` is the base of every error speakerid raises on purpose. It lives in
``store`` (which imports nothing of ours) so that every layer can subclass it while imports keep
pointing one way; ``speakerid`` re-exports it. Messages are one line and name the input.

The middle classes say what kind of failure it is, so the HTTP service picks a status by type:
:class:`NotFoundError` 404, :class:`ConflictError` 409, :class:`InvalidValueError` 422.
"""

from __future__ import annotations


class SpeakerIDError(Exception):
    """Base class for every error speakerid raises on purpose."""


class InvalidValueError(SpeakerIDError):
    """A value given by the caller (a name, a threshold, a count) is not acceptable."""


class NotFoundError(SpeakerIDError):
    """What the caller named does not exist."""


class ConflictError(SpeakerIDError):
    """The request contradicts what the store already holds."""


class StoreError(SpeakerIDError):
    """The store cannot be opened or used (corrupt, too new, unreachable, not writable)."""


class InvalidNameError(InvalidValueError):
    """A speaker, group or resource name breaks the naming rule (see :mod:`store.names`)."""


class ModelMismatchError(ConflictError):
    """The store holds embeddings of another model; vectors of different models are not comparable."""


class SpeakerNotFoundError(NotFoundError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no enrolled speaker named {name!r}")


class SpeakerExistsError(ConflictError):
    def __init__(self, name: str, existing: str | None = None):
        self.name = name
        same = f" (as {existing!r})" if existing and existing != name else ""
        super().__init__(
            f"speaker {name!r} is already enrolled{same}; use --append to add clips or --replace to re-enroll"
        )


class DuplicateClipError(ConflictError):
    """The same recording is already enrolled for this speaker."""


class UnknownResourceError(NotFoundError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown resource {name!r}; grant someone access to it first")


class GrantNotFoundError(NotFoundError):
    """Revoking a grant that does not exist."""


class KeyNotFoundError(NotFoundError):
    def __init__(self, key_id: str):
        super().__init__(f"no API key with id {key_id!r}")


class IndexFileError(StoreError):
    """The index file is missing, stale or corrupt; the store rebuilds it from the database."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer speakerid."""


class ReadOnlyStoreError(StoreError):
    """A write was asked of a store that can only be read (a read-only home)."""


class VoiceNotFoundError(NotFoundError):
    def __init__(self, label: str):
        self.label = label
        super().__init__(f"no unknown voice {label!r} in the archive (speakerid voices lists them)")


class RecordingNotFoundError(NotFoundError):
    def __init__(self, recording: str):
        self.recording = recording
        super().__init__(f"{recording}: not in the archive (speakerid timeline --keep adds it)")
