"""EER and minDCF against cases whose answers are known by hand."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakerid.decide.metrics import det_curve, eer, min_dcf


def test_perfect_separation_has_zero_eer_and_cost():
    scores = [0.1, 0.2, 0.8, 0.9]
    labels = [0, 0, 1, 1]
    rate, threshold = eer(scores, labels)
    assert rate == 0.0 and 0.2 <= threshold <= 0.8
    assert min_dcf(scores, labels, 0.01)[0] == 0.0


def test_reversed_scores_have_full_error():
    assert eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])[0] == pytest.approx(1.0)


def test_one_overlap_in_four_each():
    # targets 0.35 0.6 0.7 0.8; non-targets 0.1 0.2 0.3 0.65 -> one miss, one false alarm of four
    rate, _ = eer([0.35, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3, 0.65], [1, 1, 1, 1, 0, 0, 0, 0])
    assert rate == pytest.approx(0.25)


def test_needs_both_classes():
    with pytest.raises(ValueError):
        eer([0.1, 0.2], [1, 1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.booleans()), min_size=2, max_size=60))
def test_det_rates_are_monotone_and_eer_bounded(trials):
    scores = np.array([s for s, _ in trials])
    labels = np.array([l for _, l in trials])
    if labels.all() or not labels.any():
        return
    det = det_curve(scores, labels)
    assert np.all(np.diff(det.miss) >= 0) and np.all(np.diff(det.false_alarm) <= 0)
    rate, _ = eer(scores, labels)
    assert 0.0 <= rate <= 1.0
