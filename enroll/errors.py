"""Why an enrollment was refused, in words a person can act on."""

from speakerid.errors import SpeakerIDError


class EnrollmentError(SpeakerIDError):
    """The clips, together, cannot make a trustworthy voiceprint; nothing was written."""
