"""Quality gates for enrollment clips. Thresholds come from measurements on mini-voxceleb1.

- Clipping: real clips have at most 0.001 % of samples at >= 0.99 of full scale; we refuse 0.1 %.
- Level: the speech of real clips sits between -38 and -14 dBFS (RMS); we refuse below -50 dBFS.
- Consistency: a clip against the profile of the other clips of the same person scores >= 0.60,
  against other people's profiles at most 0.38: with three or more clips we refuse a clip under
  0.40 against the others. Two clips can only be compared with each other, which is noisier
  (same person: 1st percentile 0.40, lowest 0.34; different people: up to 0.40), so two clips
  are refused only under 0.30.
"""

from __future__ import annotations

import numpy as np

from speakerid.audio import Audio
from speakerid.vad import Speech

from .errors import EnrollmentError

MAX_CLIPPED_FRACTION = 0.001
MIN_SPEECH_DBFS = -50.0
MIN_CONSISTENCY = 0.40
MIN_PAIR_CONSISTENCY = 0.30


def check_level(audio: Audio, speech: Speech) -> None:
    """Refuse heavily clipped or very quiet recordings: they make poor voiceprints."""
    clipped = float(np.mean(np.abs(audio.samples) >= 0.99))
    if clipped > MAX_CLIPPED_FRACTION:
        raise EnrollmentError(f"{audio.source}: heavily clipped ({clipped:.1%} of samples at full scale); "
                              "record again with lower input gain")
    level = speech_level_dbfs(audio, speech)
    if level < MIN_SPEECH_DBFS:
        raise EnrollmentError(f"{audio.source}: too quiet (speech at {level:.0f} dBFS, need at least "
                              f"{MIN_SPEECH_DBFS:.0f} dBFS); speak closer to the microphone or raise its gain")


def speech_level_dbfs(audio: Audio, speech: Speech) -> float:
    """RMS level of the detected speech only, so pauses do not make a clip look quiet."""
    samples = np.concatenate([audio.samples[a:b] for a, b in speech.regions]) if speech.regions else audio.samples
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(max(rms, 1e-10))


def check_consistency(names: list[str], vectors: np.ndarray, minimum: float = MIN_CONSISTENCY) -> None:
    """Refuse clips whose voice disagrees with the rest (probably someone else), naming them."""
    n = len(vectors)
    if n < 2:
        return
    if n == 2:
        score = float(vectors[0] @ vectors[1])
        if score < MIN_PAIR_CONSISTENCY:
            raise EnrollmentError(f"{names[0]} and {names[1]} do not sound like the same speaker "
                                  f"(similarity {score:.2f}, need {MIN_PAIR_CONSISTENCY:.2f}); "
                                  "enroll from clips of one person")
        return
    total = vectors.sum(axis=0)
    odd = []
    for i in range(n):
        rest = total - vectors[i]
        score = float(vectors[i] @ rest / max(np.linalg.norm(rest), 1e-12))
        if score < minimum:
            odd.append((score, names[i]))
    if odd:
        listed = ", ".join(f"{name} ({score:.2f})" for score, name in sorted(odd))
        raise EnrollmentError(f"voice differs from the other clips, probably someone else: {listed}; "
                              f"need similarity {minimum:.2f}; remove these clips")
