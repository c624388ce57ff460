"""speakerid: who is speaking, or "unknown". See README.md.

>>> from speakerid import SpeakerID
>>> SpeakerID.open("~/voices").identify("clip.wav")   # doctest: +SKIP
"""

from store import ConflictError, InvalidValueError, NotFoundError, SpeakerIDError, StoreError

from .api import Identification, Options, SpeakerID, Verification
from .audio import Audio, load_audio
from .enrollment import EnrollResult
from .errors import (AudioError, AudioTooLongError, EnrollmentError, InsufficientSpeechError, ModelError,
                     ModelIntegrityError, UsageError)

__version__ = "0.2.0"
__all__ = [
    "Audio", "AudioError", "AudioTooLongError", "ConflictError", "EnrollResult", "EnrollmentError", "Identification",
    "InsufficientSpeechError", "InvalidValueError", "ModelError", "ModelIntegrityError", "NotFoundError", "Options",
    "SpeakerID", "SpeakerIDError", "StoreError", "UsageError", "Verification", "load_audio",
]
