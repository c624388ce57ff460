"""Progress of long work (evaluations, timelines, bulk enrollment) on stderr.

On a terminal: tqdm's bar. Anywhere else (a log file, CI, ``nohup``): a plain line every 30 s (none for
work done sooner), so a run of many minutes is never silent, and a log never fills with carriage-return frames.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

EVERY = 30.0  # seconds between lines when stderr is not a terminal


class _Lines(tqdm):
    """tqdm printing whole lines (at most one per ``mininterval`` seconds, and the last state)."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        sys.stderr.write((self.__str__() if msg is None else msg).strip() + "\n")
        sys.stderr.flush()
        return True


class _Nowhere:
    """Where tqdm's own writes (a closing newline, carriage returns) go in line mode."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def progress(total: float | None = None, *, desc: str, unit: str = "it", enabled: bool = True, **options) -> tqdm:
    """A progress bar for ``total`` units (``None``: unknown), or a silent one when ``enabled`` is False.

    >>> with progress(3, desc="demo", enabled=False) as bar:
    ...     bar.update(3)
    """
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **options)
    return _Lines(
        total=total,
        desc=desc,
        unit=unit,
        file=_Nowhere(),
        mininterval=EVERY,
        miniters=1,
        delay=EVERY,
        ascii=True,
        **options,
    )
