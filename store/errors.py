"""Exceptions raised by the store; messages are one line and name the speaker or file."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for store failures a user can act on."""


class ModelMismatchError(StoreError):
    """The store holds embeddings of another model; vectors of different models are not comparable."""


class SpeakerNotFoundError(StoreError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no enrolled speaker named {name!r}")


class SpeakerExistsError(StoreError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"speaker {name!r} is already enrolled; use --append to add clips or --replace to re-enroll")


class IndexFileError(StoreError):
    """The index file is missing, stale or corrupt; the store rebuilds it from SQLite."""
