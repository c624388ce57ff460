"""The voiceprint store: SQLite metadata (source of truth) + a derived FAISS index.

Knows nothing about audio or models beyond their ids: it stores and searches vectors.
"""

from .errors import IndexFileError, ModelMismatchError, SpeakerExistsError, SpeakerNotFoundError, StoreError
from .index import VectorIndex
from .store import DB_NAME, INDEX_NAME, Hit, NewEmbedding, Speaker, Store

__all__ = [
    "DB_NAME", "INDEX_NAME", "Hit", "IndexFileError", "ModelMismatchError", "NewEmbedding", "Speaker",
    "SpeakerExistsError", "SpeakerNotFoundError", "Store", "StoreError", "VectorIndex",
]
