"""Quality gates for enrollment clips. Thresholds come from measurements on mini-voxceleb1.

- Clipping: real clips have at most 0.001 % of samples at >= 0.99 of full scale; we refuse 0.1 %.
- Level: the speech of real clips sits between -38 and -14 dBFS (RMS); we refuse below -50 dBFS.
- Consistency: a clip against the profile of the other clips of the same person scores >= 0.60,
  against other people's profiles at most 0.38: with three or more clips we refuse a clip under
  0.40 against the others. Two clips can only be compared with each other, which is noisier
  (same person: 1st percentile 0.40, lowest 0.34; different people: up to 0.40), so two clips
  are refused only under 0.30.

Each gate says what is wrong (or ``None``), so enrollment can refuse the whole set or, with
``skip_bad``, leave the offending clips out and say why.
"""

from __future__ import annotations

import numpy as np

from speakerid.voice.audio import Audio
from speakerid.voice.vad import Speech

MAX_CLIPPED_FRACTION = 0.001
MIN_SPEECH_DBFS = -50.0
MIN_CONSISTENCY = 0.40
MIN_PAIR_CONSISTENCY = 0.30


def level_problem(audio: Audio, speech: Speech) -> str | None:
    """Heavily clipped or very quiet recordings make poor voiceprints: why this one does, or None."""
    clipped = float(np.mean(np.abs(audio.samples) >= 0.99))
    if clipped > MAX_CLIPPED_FRACTION:
        return f"heavily clipped ({clipped:.1%} of samples at full scale); record again with lower input gain"
    level = speech_level_dbfs(audio, speech)
    if level < MIN_SPEECH_DBFS:
        return (
            f"too quiet (speech at {level:.0f} dBFS, need at least {MIN_SPEECH_DBFS:.0f} dBFS); "
            "speak closer to the microphone or raise its gain"
        )
    return None


def speech_level_dbfs(audio: Audio, speech: Speech) -> float:
    """RMS level of the detected speech only, so pauses do not make a clip look quiet."""
    samples = np.concatenate([audio.samples[a:b] for a, b in speech.regions]) if speech.regions else audio.samples
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * np.log10(max(rms, 1e-10))


def consistency(vectors: np.ndarray) -> np.ndarray:
    """Each clip's cosine to the profile of the other clips (two clips: to each other).

    >>> v = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    >>> [round(float(x), 2) for x in consistency(v / np.linalg.norm(v, axis=1, keepdims=True))]
    [0.67, 0.78, 0.06]
    """
    n = len(vectors)
    if n < 2:
        return np.ones(n, dtype=np.float32)
    if n == 2:
        score = float(vectors[0] @ vectors[1])
        return np.array([score, score], dtype=np.float32)
    rest = vectors.sum(axis=0)[None] - vectors
    rest /= np.maximum(np.linalg.norm(rest, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", vectors, rest)


def minimum_consistency(count: int) -> float:
    return MIN_PAIR_CONSISTENCY if count == 2 else MIN_CONSISTENCY


def odd_one_out(vectors: np.ndarray) -> int | None:
    """The clip least like the others when it is under the bar (probably someone else), else None.

    With two clips that disagree there is no telling which is the odd one: -1.
    """
    scores = consistency(vectors)
    bar = minimum_consistency(len(vectors))
    if len(vectors) < 2 or scores.min() >= bar:
        return None
    return -1 if len(vectors) == 2 else int(np.argmin(scores))


CROSS_SESSION_DROP = 0.12  # a new recording scores this much lower than the enrollment's own clips
#                            (wild-dev: 0.84 within a session, 0.72 across sessions, on average)
GOOD_SPEECH = 20.0  # seconds: what Azure asks for; more does little for ECAPA


def feedback(vectors: np.ndarray, speech: float, threshold: float) -> dict:
    """How good a voiceprint is, and what would improve it (like Picovoice Eagle's, but with its
    reasons): net speech; how well the clips agree (each against the others); the share of new
    recordings of this person expected to be named at ``threshold``, from the clips' agreement
    lowered by :data:`CROSS_SESSION_DROP` (one clip: not estimated); and advice.

    >>> v = np.array([[1, 0.1], [1, 0.15], [1, 0.05]], dtype=np.float32)
    >>> feedback(v / np.linalg.norm(v, axis=1, keepdims=True), 12.0, 0.4)["advice"][0]
    'add 8 s of speech from another recording (20 s in all)'
    """
    agreement = consistency(vectors) if len(vectors) > 1 else None
    expected = None if agreement is None else float(np.mean(agreement - CROSS_SESSION_DROP >= threshold))
    advice = []
    if speech < GOOD_SPEECH:
        advice.append(f"add {GOOD_SPEECH - speech:.0f} s of speech from another recording ({GOOD_SPEECH:g} s in all)")
    if agreement is not None and float(agreement.min()) < threshold + CROSS_SESSION_DROP:
        advice.append("some clips sound unlike the others (noise, another voice, another room): replace them")
    elif agreement is not None and float(agreement.mean()) > 0.9 and speech >= GOOD_SPEECH:
        advice.append("the clips sound like one recording: add 10 s from another day or microphone")
    if not advice:
        advice.append("good: nothing to add")
    return {
        "speech_seconds": round(speech, 1),
        "agreement": None if agreement is None else round(float(agreement.mean()), 3),
        "expected_accept": None if expected is None else round(expected, 2),
        "advice": advice,
    }
