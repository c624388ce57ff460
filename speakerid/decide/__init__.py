"""Every decision, in one place: who it is or "unknown", whether a claim holds, and at what
threshold. ``scoring`` ranks enrolled profiles against a voiceprint; ``calibration`` sets the
threshold from the store's own population at a false-accept target (``trials`` from the user's
labelled trials); ``metrics`` are EER, minDCF and DET curves; ``decider.Decider`` is what identify,
verify, access checks, streams, timelines and ``/v1/classify`` all ask. Where the threshold comes
from: here."""
