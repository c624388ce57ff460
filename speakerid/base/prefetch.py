"""Decode ahead of the model, so reading files and finding speech overlap with embedding.

Decoding (libsndfile) and speech detection (ONNX Runtime) release the GIL, so one thread keeps
them ahead of the model while torch uses the cores; a bounded read-ahead keeps memory flat on
150,000 clips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 1, ahead: int = 4) -> Iterator[R]:
    """``map(fn, items)`` in order, computed up to ``ahead`` items early on ``workers`` threads.

    An exception raised by ``fn`` is raised here, at its item; work queued behind it is cancelled.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="speakerid-decode")
    pending = []
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
