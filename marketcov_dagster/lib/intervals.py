"""Bar intervals supported by marketcov.

``1d`` and ``1m`` are fetched from vendors; the others are resampled from one of them and never
fetched: intraday candles from ``1m`` (anchored at each session's open), weekly bars from ``1d``
(one per week, stamped at its first session's open, owned by its last session).
"""

from __future__ import annotations

from typing import Literal

Interval = Literal["1d", "1m", "5m", "15m", "30m", "1h", "1w"]
INTERVALS: tuple[Interval, ...] = ("1d", "1m", "5m", "15m", "30m", "1h", "1w")
FETCHED: tuple[Interval, ...] = ("1d", "1m")
MINUTE_MS = 60_000

# what each derived interval is resampled from, and its bar length in minutes
DERIVED_FROM: dict[Interval, Interval] = {"5m": "1m", "15m": "1m", "30m": "1m", "1h": "1m", "1w": "1d"}
_MINUTES: dict[Interval, int] = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60}


def is_intraday(interval: Interval) -> bool:
    """Bars shorter than a session (a fixed number of minutes), as opposed to one bar per session."""
    return interval in _MINUTES


def bar_ms(interval: Interval) -> int:
    """The nominal length of an intraday bar in ms (the last bar of a session may be shorter)."""
    if interval not in _MINUTES:
        raise ValueError(f"{interval!r} bars last a whole session, not a fixed number of minutes")
    return _MINUTES[interval] * MINUTE_MS
