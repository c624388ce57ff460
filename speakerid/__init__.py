"""speakerid: who is speaking, or "unknown". See README.md.

>>> from speakerid import SpeakerID
>>> SpeakerID.open("~/voices").identify("clip.wav")   # doctest: +SKIP
"""

from .api import Identification, Options, SpeakerID, Verification
from .audio import Audio, load_audio
from .errors import AudioError, InsufficientSpeechError, ModelError, ModelIntegrityError, SpeakerIDError

__version__ = "0.1.0"
__all__ = [
    "Audio", "AudioError", "Identification", "InsufficientSpeechError", "ModelError", "ModelIntegrityError",
    "Options", "SpeakerID", "SpeakerIDError", "Verification", "load_audio",
]
