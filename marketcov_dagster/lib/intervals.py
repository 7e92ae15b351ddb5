"""Bar intervals supported by marketcov."""

from __future__ import annotations

from typing import Literal

Interval = Literal["1d", "1m"]
INTERVALS: tuple[Interval, ...] = ("1d", "1m")
MINUTE_MS = 60_000
