"""Exceptions the rest of the package raises.

Every message is one line a person can act on and names the input it is about; the CLI prints it
as ``error: <message>`` and the HTTP service returns it in a JSON body.
"""

from __future__ import annotations


class SpeakerIDError(Exception):
    """Base class for every error this package raises on purpose."""


class AudioError(SpeakerIDError):
    """The input could not be used as speech: unreadable, empty, too short or long, no speech."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class InsufficientSpeechError(AudioError):
    """Speech was found, but less than the operation needs (its own answer, never a guess)."""

    def __init__(self, source: str, got: float, need: float):
        self.got = got
        self.need = need
        super().__init__(source, f"need at least {need:g} s of speech, got {got:.2f} s")


class ModelError(SpeakerIDError):
    """The embedding model could not be found, fetched or loaded."""


class ModelIntegrityError(ModelError):
    """A model file does not match its pinned sha256 digest; it is never loaded."""
