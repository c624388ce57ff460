"""Exceptions speakerid raises on purpose, all subclasses of :class:`SpeakerIDError`.

Every message is one line a person can act on and names the input it is about; the CLI prints it
as ``error: <message>`` and the HTTP service returns it as ``{"error": ...}`` with a status chosen
by the exception's class (see :mod:`speakerid.service.errors`). The base classes are defined in
:mod:`store.errors`, the lowest layer, so that the store's errors share the same root.
"""

from __future__ import annotations

from store.errors import (
    InvalidValueError,
    SpeakerIDError,  # noqa: F401 (re-exported)
)


class AudioError(InvalidValueError):
    """The input could not be used as speech: unreadable, empty, too short or long, no speech."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class AudioTooLongError(AudioError):
    """More audio than the caller allows (HTTP 413)."""


class InsufficientSpeechError(AudioError):
    """Speech was found, but less than the operation needs (its own answer, never a guess)."""

    def __init__(self, source: str, got: float, need: float):
        self.got = got
        self.need = need
        super().__init__(source, f"need at least {need:g} s of speech, got {got:.2f} s")


class EnrollmentError(InvalidValueError):
    """The clips, together, cannot make a trustworthy voiceprint; nothing was written."""


class ModelError(SpeakerIDError):
    """The embedding model could not be found, fetched or loaded."""


class ModelIntegrityError(ModelError):
    """A model file does not match its pinned sha256 digest; it is never loaded."""


class UsageError(InvalidValueError):
    """A call or command was given arguments that do not make sense (or together)."""


def one_line(exc: BaseException) -> str:
    """The last non-empty line of an exception's message (libraries raise multi-line ones), or its type.

    >>> one_line(ValueError("while loading\\n  File x\\nshape mismatch "))
    'shape mismatch'
    >>> one_line(KeyError())
    'KeyError'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
