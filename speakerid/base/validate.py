"""Checks for the numbers callers pass (thresholds, rates, counts, durations): one place, so the
CLI, the Python API and HTTP refuse the same values with the same words, and ``nan`` can never
slip into a comparison (where every test is false) or into JSON.

>>> threshold(0.5)
0.5
>>> threshold(float("nan"))
Traceback (most recent call last):
...
store.errors.InvalidValueError: threshold must be a number between -1 and 1, got nan
>>> count("top_k", "3", low=1, high=100)
3
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from store.errors import InvalidValueError


def number(
    what: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    unit: str = "",
) -> float:
    """A finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    shown = f"{low:g}" if low is not None else ""
    span = (
        f"between {low:g} and {high:g}"
        if low is not None and high is not None
        else f"{'over' if low_open else 'at least'} {shown}"
        if low is not None
        else f"at most {high:g}"
        if high is not None
        else "a number"
    )
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if (
        isinstance(value, bool)
        or not math.isfinite(out)
        or (low is not None and (out < low or (low_open and out == low)))
        or (high is not None and out > high)
    ):
        raise InvalidValueError(
            f"{what} must be a number {span}{unit}, got {value!r}"
            if not isinstance(value, float)
            else f"{what} must be a number {span}{unit}, got {value:g}"
        )
    return out


def count(what: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """A whole number in ``[low, high]``."""
    try:
        out = int(value)
        whole = not isinstance(value, bool) and float(value) == out
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or out < low or (high is not None and out > high):
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidValueError(f"{what} must be a whole number {span}, got {value!r}")
    return out


def threshold(value: Any, what: str = "threshold") -> float:
    """A cosine threshold: -1 to 1."""
    return number(what, value, low=-1.0, high=1.0)


def far(value: Any, what: str = "false-accept rate") -> float:
    """A false-accept rate: over 0, under 1 (``0.01`` is 1 %)."""
    out = number(what, value, low=0.0, high=1.0, low_open=True)
    if out >= 1.0:
        raise InvalidValueError(f"{what} must be under 1 (0.01 is 1 %), got {value!r}")
    return out


def seconds(what: str, value: Any, *, low: float = 0.0, high: float | None = None) -> float:
    return number(what, value, low=low, high=high, unit=" seconds")


def iso_time(value: Any, what: str = "time") -> str:
    """An ISO 8601 time as the store writes it (UTC, milliseconds); a time without a zone is UTC.

    >>> iso_time("2026-11-24T09:00")
    '2026-11-24T09:00:00.000+00:00'
    >>> iso_time("9999-12-31T23:59-12:00")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    store.errors.InvalidValueError: time must be an ISO 8601 time between the years 1 and 9999 in UTC, got ...
    """
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidValueError(f"{what} must be an ISO 8601 time such as 2026-11-24T09:00, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")
    except OverflowError:
        raise InvalidValueError(
            f"{what} must be an ISO 8601 time between the years 1 and 9999 in UTC, got {value!r}"
        ) from None
