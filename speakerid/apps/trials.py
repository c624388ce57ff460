"""Calibrating on labelled trials of the user's own audio (``speakerid calibrate --trials``).

The trial list is in the VoxCeleb format (``1|0 <enrol clip> <test clip>``). Non-target trials play
the part the store's impostor comparisons play in :mod:`speakerid.decide.calibration`: the threshold is
the non-target score exceeded with the per-comparison probability that gives the false-accept
target among the store's speakers; target trials give the expected miss rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speakerid.apps.voxceleb import read_trials, wav_root
from speakerid.base.errors import AudioError, UsageError
from speakerid.base.prefetch import prefetched
from speakerid.decide.calibration import MIN_COMPARISONS, per_comparison, tail_quantile

if TYPE_CHECKING:  # the facade hands itself in; apps sit below it
    from speakerid.api import SpeakerID


def calibrate_on_trials(sid: SpeakerID, trials_file: Path, root: Path, *, far: float | None = None) -> dict:
    from speakerid.base import validate

    far = sid.far if far is None else validate.far(far)
    trials = read_trials(trials_file)
    base = wav_root(root)
    clips = sorted({t.enrol for t in trials} | {t.test for t in trials})
    vectors: dict[str, np.ndarray] = {}
    unreadable: list[str] = []

    def decode(rel: str):
        try:
            return rel, sid.reader.decode(base / rel, min_speech=None)
        except AudioError as exc:
            return rel, exc

    for rel, decoded in prefetched(decode, clips):
        if isinstance(decoded, AudioError):
            unreadable.append(str(decoded))
            continue
        vectors[rel] = sid.reader.embed(decoded[1])
    usable = [t for t in trials if t.enrol in vectors and t.test in vectors]
    scores = np.array([float(vectors[t.enrol] @ vectors[t.test]) for t in usable])
    labels = np.array([t.target for t in usable], dtype=bool)
    nontarget, target = np.sort(scores[~labels])[::-1], scores[labels]
    if len(nontarget) < MIN_COMPARISONS:
        raise UsageError(
            f"{trials_file}: {len(nontarget)} usable non-target trials; calibrating needs at least {MIN_COMPARISONS}"
        )
    speakers = max(len(sid.speakers()), 2)
    threshold, method = tail_quantile(nontarget, len(nontarget), per_comparison(far, speakers))
    miss = float(np.mean(target < threshold)) if len(target) else None
    verify = {f"{f:g}": round(tail_quantile(nontarget, len(nontarget), f)[0], 6) for f in (0.01, 0.001)}
    text = (
        f"threshold {threshold:.3f} for {far:.1%} false accepts among {speakers} enrolled speakers, from "
        f"{len(nontarget):,} non-target trials ({method})"
        + (f"; expected miss rate {miss:.1%} over {len(target)} target trials" if miss is not None else "")
        + f"; to verify one claim at 1 % / 0.1 % false accepts: {verify['0.01']:.3f} / {verify['0.001']:.3f}"
        + (f"; {len(unreadable)} clips unreadable" if unreadable else "")
    )
    return {
        "threshold": round(threshold, 6),
        "source": "trials",
        "far": far,
        "speakers": speakers,
        "nontarget_trials": int(len(nontarget)),
        "target_trials": int(len(target)),
        "method": method,
        "expected_miss": None if miss is None else round(miss, 6),
        "verify_thresholds": verify,
        "skipped_trials": len(trials) - len(usable),
        "unreadable_examples": unreadable[:5],
        "text": text,
    }
