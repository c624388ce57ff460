"""What a cosine means: a log-likelihood ratio, and from it a threshold per group size and a
probability that the named person is right.

A logistic model, ``llr = a * cosine + b``, fitted once on real speech (mini-voxceleb1 and
wild-dev, each as recorded and through a simulated change of room, line and noise between
enrollment and probe; ``python benchmarks/small_groups.py --fit`` writes ``data/score_calibration.json``),
with the two classes weighted equally so that its log-odds are likelihood ratios. It does not
depend on who is enrolled, so no enrollment can move it.

Among ``n`` enrolled people, with a share :data:`PRIOR` of the questions asked by one of them, the
best candidate is worth naming when it is at least as likely as "someone not enrolled": its
likelihood ratio must reach ``n * (1 - PRIOR) / PRIOR``. So a small group needs less than a large
one (a stranger has fewer people to be mistaken for), and the threshold follows from the group
size instead of from how alike its few members happen to sound.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

FILE = Path(__file__).parent / "data" / "score_calibration.json"
PRIOR = 0.5  # the share of questions asked by someone enrolled (a door: about half are)


@cache
def coefficients() -> tuple[float, float]:
    """``(a, b)`` of ``llr = a * cosine + b``."""
    record = json.loads(FILE.read_text())
    return float(record["a"]), float(record["b"])


def llr(score: float) -> float:
    """The log-likelihood ratio of a cosine (same person against different people)."""
    a, b = coefficients()
    return a * score + b


def threshold(speakers: int, prior: float = PRIOR) -> float:
    """The cosine from which the best of ``speakers`` is named: as likely as a stranger.

    >>> round(threshold(8) - threshold(3), 3) > 0
    True
    """
    a, b = coefficients()
    return (math.log(max(speakers, 1) * (1 - prior) / prior) - b) / a


def posteriors(scores: list[float], speakers: int, prior: float = PRIOR) -> tuple[list[float], float]:
    """``(p for each scored person, p for "nobody enrolled")`` given the scores of the best few of
    ``speakers`` enrolled people (the rest add too little to matter): before listening each
    enrolled person has ``prior / speakers``, a stranger ``1 - prior``.

    >>> named, nobody = posteriors([0.8, 0.2], 5)
    >>> named[0] > 0.99, nobody < 0.01
    (True, True)
    """
    each = prior / max(speakers, len(scores), 1)
    odds = [math.exp(min(llr(s), 700.0)) * each for s in scores]
    total = (1 - prior) + sum(odds)
    return [o / total for o in odds], (1 - prior) / total


def confidence(scores: list[float], speakers: int, prior: float = PRIOR) -> float:
    """The probability that the best-scoring of ``speakers`` enrolled people is the one speaking.

    >>> confidence([0.8, 0.2], 5) > 0.99, confidence([0.1, 0.05], 5) < 0.01
    (True, True)
    """
    return posteriors(scores, speakers, prior)[0][0] if scores else 0.0


def verified(score: float, prior: float = PRIOR) -> float:
    """The probability that a claimed person is the one speaking, from their score alone.

    >>> verified(0.8) > 0.99 > verified(0.3)
    True
    """
    odds = math.exp(min(llr(score), 700.0)) * prior / (1 - prior)
    return odds / (1 + odds)
