"""The voiceprint store: speakers, their clip embeddings and the access-policy tables, in SQLite
(the embedded default, with a derived FAISS index) or PostgreSQL (shared by many machines).

Knows nothing about audio or models beyond their ids: it keeps and searches vectors. All of
speakerid's SQL lives in this package. Open one with :func:`open_store` (a folder or a
``postgresql://`` URL) and program against its roles (:mod:`store.roles`): ``store.voiceprints``,
``store.policy``, ``store.audit``, ``store.archive``, ``store.settings``, ``store.maintenance``.
"""

from .errors import (
    ConflictError,
    DuplicateClipError,
    GrantNotFoundError,
    IndexFileError,
    InvalidNameError,
    InvalidValueError,
    KeyNotFoundError,
    ModelMismatchError,
    NotFoundError,
    ReadOnlyStoreError,
    RecordingNotFoundError,
    SchemaTooNewError,
    SpeakerExistsError,
    SpeakerIDError,
    SpeakerNotFoundError,
    StoreError,
    UnknownResourceError,
    VoiceNotFoundError,
)
from .index import VectorIndex
from .names import group_name, name_key, principal, resource_name, speaker_name
from .opening import is_postgres_url, open_store
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
    IndexState,
    NewEmbedding,
    NewTurn,
    Resource,
    Speaker,
)
from .roles import AccessPolicy, Archive, AuditLog, Maintenance, Settings, Store, Voiceprints
from .sqlite_store import DB_NAME, INDEX_NAME

__all__ = [
    "AccessPolicy",
    "Archive",
    "ArchivedRecording",
    "ArchivedTurn",
    "ArchivedVoice",
    "AuditLog",
    "Maintenance",
    "Settings",
    "Voiceprints",
    "open_store",
    "ApiKey",
    "Changes",
    "CheckReport",
    "ConflictError",
    "Counts",
    "DB_NAME",
    "Decision",
    "DuplicateClipError",
    "Event",
    "GrantNotFoundError",
    "Hit",
    "INDEX_NAME",
    "IndexFileError",
    "IndexState",
    "InvalidNameError",
    "InvalidValueError",
    "KeyNotFoundError",
    "ModelMismatchError",
    "NewEmbedding",
    "NewTurn",
    "NotFoundError",
    "ReadOnlyStoreError",
    "RecordingNotFoundError",
    "Resource",
    "SchemaTooNewError",
    "Speaker",
    "SpeakerExistsError",
    "SpeakerIDError",
    "SpeakerNotFoundError",
    "Store",
    "StoreError",
    "UnknownResourceError",
    "VectorIndex",
    "VoiceNotFoundError",
    "group_name",
    "is_postgres_url",
    "name_key",
    "principal",
    "resource_name",
    "speaker_name",
]
