"""Whether a new voice is an enrolled voice again: the same person under a second name, or a copy
of someone's clips played backwards, faster or slower.

Why: a threshold measured on the enrolled population can be pushed up by "speakers" who sound like
others already enrolled (issue #35: four decoys made from enrolled clips, time-reversed and sped
up 10 %, raised a door's threshold from 0.37 to 0.61 and cut genuine admissions from 60 % to 2 %).
Measured on mini-voxceleb1: a time-reversed copy scores 0.63-0.84 against the original profile,
10 % faster 0.46-0.65, both together 0.28-0.57, while different people's profiles score at most
0.43. Undoing the change brings a copy back to its original, so each new voice is also heard
reversed and at 85-115 % speed, and refused when any of these sounds like an enrolled voice
(:data:`NEAR_COPY`). An admin may override (``allow_similar``); both are in the change log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from speakerid.decide.calibration import SAME_VOICE
from speakerid.decide.scoring import Profiles, centroid
from speakerid.voice.audio import SAMPLE_RATE, resample

NEAR_COPY = SAME_VOICE  # 0.7: one voice (one person enrolled twice on mini-voxceleb1: 0.83)
SPEEDS = (0.85, 0.9, 0.95, 1.05, 1.1, 1.15)
CLIPS = 3  # the longest clips are heard changed (each change costs an embedding per clip)


@dataclass(frozen=True)
class NearCopy:
    speaker: str  # the enrolled voice it copies
    score: float
    how: str  # "as recorded", "time-reversed", "at 90 % speed", ...

    def reason(self, name: str) -> str:
        how = "" if self.how == "as recorded" else f" {self.how}"
        return (
            f"the voice of {name} is {self.speaker}'s{how} (score {self.score:.2f} >= {NEAR_COPY:g}): the same "
            f"person under a second name, or a copy of their clips; refused, since it would bend "
            f"{self.speaker}'s and everyone's decisions (an admin may allow it: --allow-similar)"
        )


def _changes() -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    out: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [("time-reversed", lambda x: x[::-1].copy())]
    for speed in SPEEDS:
        stretch = round(SAMPLE_RATE * speed)  # a copy played at ``speed`` comes back when stretched by it

        def change(x: np.ndarray, rate: int = stretch) -> np.ndarray:
            return resample(x, SAMPLE_RATE, rate)

        out.append((f"at {speed:.0%} speed", change))
        out.append((f"time-reversed at {speed:.0%} speed", lambda x, c=change: c(x[::-1].copy())))
    return out


def find_near_copy(
    name: str,
    vectors: np.ndarray,
    speech: list[np.ndarray],
    profiles: Profiles,
    embed: Callable[[np.ndarray], np.ndarray],
) -> NearCopy | None:
    """The enrolled voice (other than ``name``'s) that the new clips copy, if any. ``vectors`` are
    the clips' embeddings, ``speech`` their speech samples at 16 kHz, ``embed`` one clip's embedding."""
    found = profiles.rank(centroid(vectors), top_k=1, exclude=name)
    if not found:
        return None
    if found[0].score >= NEAR_COPY:
        return NearCopy(found[0].speaker, found[0].score, "as recorded")
    longest = sorted(speech, key=len, reverse=True)[:CLIPS]
    if not longest:  # clips read on Ray come back as vectors only: the copy as recorded is all there is to hear
        return None
    best: NearCopy | None = None
    for how, change in _changes():  # every change heard, the closest kept: the report names the right one
        changed = np.stack([embed(change(x)) for x in longest])
        hit = profiles.rank(centroid(changed), top_k=1, exclude=name)
        if hit and hit[0].score >= NEAR_COPY and (best is None or hit[0].score > best.score):
            best = NearCopy(hit[0].speaker, hit[0].score, how)
    return best
