"""Adaptive s-norm: a score against what impostors score, on both sides of a trial.

Each side's cosines to a fixed cohort (the model's 7,205 training speakers, its classifier's
prototypes: ``speakerid.voice.cohort``), top :data:`TOP` of them, give that side's impostor mean
and spread; the normalised score averages the two z-scores. The cohort is fixed, so no enrollment
moves it. Measured on the shared data (benchmarks/README.md, "score normalisation"): as recorded,
EER equal to plain cosine on both sets; after a simulated change of room, better on read speech
(1.71 -> 1.33 %) and equal or slightly worse on in-the-wild speech (2.13 -> 2.33 % in the harsh
condition). It did not win everywhere, so decisions stay on plain cosine with the score
calibration; ``speakerid eval voxceleb`` reports both side by side, so a deployment can see it
on its own data.
"""

from __future__ import annotations

import numpy as np

TOP = 400


def cohort_stats(vectors: np.ndarray, cohort: np.ndarray, top: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's mean and spread over its ``top`` highest cosines to the cohort.

    >>> rng = np.random.default_rng(0)
    >>> c = rng.standard_normal((500, 8)); c /= np.linalg.norm(c, axis=1, keepdims=True)
    >>> mean, spread = cohort_stats(c[:3], c, top=50)
    >>> mean.shape, bool((spread > 0).all())
    ((3,), True)
    """
    scores = np.asarray(vectors, dtype=np.float32) @ cohort.T
    best = np.partition(scores, scores.shape[1] - top, axis=1)[:, -top:]
    return best.mean(1), np.maximum(best.std(1), 1e-6)


def as_norm(
    scores: np.ndarray, enrol: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Trials' cosines normalised by each side's ``(mean, spread)``."""
    return 0.5 * ((scores - enrol[0]) / enrol[1] + (scores - test[0]) / test[1])
