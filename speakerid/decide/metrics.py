"""Verification metrics over trial scores: DET curve, EER and minDCF (NIST SRE style)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetCurve:
    """Miss and false-alarm rates when accepting scores ``>= thresholds[i]``."""

    thresholds: np.ndarray
    miss: np.ndarray
    false_alarm: np.ndarray


def det_curve(scores, labels) -> DetCurve:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("need both target and non-target trials")
    order = np.argsort(scores, kind="mergesort")
    s, tar = scores[order], labels[order]
    miss = np.concatenate([[0.0], np.cumsum(tar)]) / tar.sum()  # first i scores rejected
    fa = 1.0 - np.concatenate([[0.0], np.cumsum(~tar)]) / (~tar).sum()
    thresholds = np.concatenate([s, [np.inf]])
    return DetCurve(thresholds=thresholds, miss=miss, false_alarm=fa)


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and the threshold where miss and false-alarm rates cross (interpolated)."""
    det = det_curve(scores, labels)
    diff = det.miss - det.false_alarm  # rises from -1 to +1
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(det.false_alarm[0]), float(det.thresholds[0])
    d0, d1 = diff[i - 1], diff[i]
    w = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    rate = det.miss[i - 1] + w * (det.miss[i] - det.miss[i - 1])
    t1 = det.thresholds[i] if np.isfinite(det.thresholds[i]) else det.thresholds[i - 1]
    threshold = det.thresholds[i - 1] + w * (t1 - det.thresholds[i - 1])
    return float(rate), float(threshold)


def min_dcf(scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost and the threshold that reaches it."""
    det = det_curve(scores, labels)
    cost = c_miss * p_target * det.miss + c_fa * (1 - p_target) * det.false_alarm
    i = int(np.argmin(cost))
    return float(cost[i] / min(c_miss * p_target, c_fa * (1 - p_target))), float(det.thresholds[i])
