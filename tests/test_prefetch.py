"""Decoding ahead of the model: order kept, errors raised at their item, memory bounded."""

from __future__ import annotations

import threading
import time

import pytest

from speakerid.base.prefetch import prefetched


def test_results_come_back_in_order_from_another_thread():
    seen = []

    def work(i):
        seen.append(threading.current_thread().name)
        time.sleep(0.001 * (i % 3))
        return i * i

    assert list(prefetched(work, range(50), ahead=4)) == [i * i for i in range(50)]
    assert all(name.startswith("speakerid-decode") for name in seen)


def test_read_ahead_is_bounded():
    pulled = []
    gate = threading.Event()

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    def work(i):
        gate.wait(5)
        return i

    results = prefetched(work, items(), ahead=3)
    first = threading.Thread(target=lambda: next(results))
    first.start()
    time.sleep(0.3)
    assert len(pulled) == 4  # the item being waited for plus `ahead` behind it, not all 100
    gate.set()
    first.join()
    assert list(results) == list(range(1, 100))


def test_an_error_is_raised_at_its_item_and_later_work_is_dropped():
    done = []

    def work(i):
        if i == 5:
            raise ValueError(f"clip {i} is broken")
        done.append(i)
        return i

    got = []
    with pytest.raises(ValueError, match="clip 5 is broken"):
        for value in prefetched(work, range(1000), ahead=4):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]
    assert max(done) < 20  # nothing like the 1,000 items was decoded after the failure
