"""speakerid: who is speaking, or "unknown". See README.md, and docs/architecture.md for the layers.

The public names live here; ``SpeakerID.open(home).identify(clip)`` is the way in (example:
:mod:`speakerid.api`).

>>> from speakerid import SpeakerID, SpeakerIDError
>>> issubclass(SpeakerID.open.__self__, SpeakerID), issubclass(SpeakerIDError, Exception)
(True, True)
"""

from speakerid.api import Identification, Options, SpeakerID, Verification
from speakerid.apps.access import AccessControl
from speakerid.base.errors import (
    AudioError,
    AudioTooLongError,
    EnrollmentError,
    InsufficientSpeechError,
    ModelError,
    ModelIntegrityError,
    UsageError,
)
from speakerid.flows.enrollment import EnrollResult
from speakerid.voice.audio import Audio, load_audio
from store import ConflictError, InvalidValueError, NotFoundError, SpeakerIDError, StoreError

__version__ = "0.2.0"
__all__ = [
    "AccessControl",
    "Audio",
    "AudioError",
    "AudioTooLongError",
    "ConflictError",
    "EnrollResult",
    "EnrollmentError",
    "Identification",
    "InsufficientSpeechError",
    "InvalidValueError",
    "ModelError",
    "ModelIntegrityError",
    "NotFoundError",
    "Options",
    "SpeakerID",
    "SpeakerIDError",
    "StoreError",
    "UsageError",
    "Verification",
    "load_audio",
]
