"""The canonical bar frame and its validation.

A canonical frame has exactly the columns ``ts, open, high, low, close, volume``: ``ts`` is the
bar's open time as UTC epoch milliseconds (int64), the rest are float64. Validation is
vectorised; it reports counts and a few offending timestamps per problem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marketcov_dagster.lib.calendars import SessionBounds
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
SAMPLE = 5


class BadBarsError(ValueError):
    """A frame is not in canonical form (missing columns, wrong types)."""


def empty_frame() -> pd.DataFrame:
    return canonical(pd.DataFrame({c: [] for c in COLUMNS}))


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce to the canonical dtypes and order; raise ``BadBarsError`` if that is impossible."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise BadBarsError(f"bars lack column(s) {missing}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    try:
        out["ts"] = pd.to_numeric(df["ts"].to_numpy(), errors="raise").astype(np.int64)
        for c in COLUMNS[1:]:
            out[c] = pd.to_numeric(df[c].to_numpy(), errors="raise").astype(np.float64)
    except (ValueError, TypeError) as e:
        raise BadBarsError(f"bars are not numeric: {e}") from None
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def required_bars(expected: int, min_completeness: float) -> int:
    """Fewest bars a session needs to count as complete."""
    return math.ceil(expected * min_completeness - 1e-9)


def ts_iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


@dataclass
class Problem:
    kind: str
    count: int
    sample: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "count": self.count, "sample": self.sample}


@dataclass
class ValidationReport:
    rows: int
    problems: list[Problem]
    invalid_mask: np.ndarray

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def invalid_rows(self) -> int:
        return int(self.invalid_mask.sum())

    def summary(self) -> str:
        if self.ok:
            return f"{self.rows} bars valid"
        return "; ".join(f"{p.kind}: {p.count} (e.g. {', '.join(p.sample)})" for p in self.problems)


def _add(problems: list[Problem], kind: str, mask: np.ndarray, ts: np.ndarray) -> None:
    n = int(mask.sum())
    if n:
        problems.append(Problem(kind, n, [ts_iso(t) for t in ts[mask][:SAMPLE]]))


def session_index(ts: np.ndarray, sessions: Sequence[SessionBounds], interval: Interval) -> np.ndarray:
    """For each ``ts``, the position in ``sessions`` (sorted, non-overlapping) of the session
    whose bar opens at ``ts``, or -1 where the calendar allows no bar. O(n log s)."""
    if not len(sessions):
        return np.full(len(ts), -1, dtype=np.int64)
    opens = np.fromiter((s.open_ms for s in sessions), dtype=np.int64, count=len(sessions))
    closes = np.fromiter((s.close_ms for s in sessions), dtype=np.int64, count=len(sessions))
    i = np.searchsorted(opens, ts, side="right") - 1
    k = np.clip(i, 0, None)
    if interval == "1d":
        ok = (i >= 0) & (ts == opens[k])
    elif interval != "1m":  # resampled bars: exactly the bucket starts each session has
        per_session = [s.bar_starts(interval) for s in sessions]
        allowed = np.concatenate(per_session)
        owner = np.repeat(np.arange(len(sessions)), [len(x) for x in per_session])
        if not len(allowed):
            return np.full(len(ts), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(allowed, ts), 0, len(allowed) - 1)
        return np.where(allowed[pos] == ts, owner[pos], -1)
    else:
        ok = (i >= 0) & (ts < closes[k]) & ((ts - opens[k]) % MINUTE_MS == 0)
        breaks = [(j, s.break_start_ms, s.break_end_ms) for j, s in enumerate(sessions) if s.break_start_ms is not None]
        for j, b0, b1 in breaks:
            ok &= ~((k == j) & (ts >= b0) & (ts < b1))
    return np.where(ok, i, -1)


def session_mask(ts: np.ndarray, sessions: Sequence[SessionBounds], interval: Interval) -> np.ndarray:
    """True where ``ts`` is the open time of a bar the calendar allows in one of ``sessions``."""
    return session_index(ts, sessions, interval) >= 0


def validate_bars(df: pd.DataFrame, sessions: Sequence[SessionBounds], interval: Interval) -> ValidationReport:
    """Check a canonical frame: no NaN, OHLC consistent, volume >= 0, unique timestamps, every
    timestamp a bar open inside one of ``sessions``."""
    ts = df["ts"].to_numpy(dtype=np.int64)
    o, h, lo, c, v = (df[k].to_numpy(dtype=np.float64) for k in COLUMNS[1:])
    problems: list[Problem] = []
    nan = np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c) | np.isnan(v)
    with np.errstate(invalid="ignore"):
        inf = ~nan & ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v))
        ohlc = ~nan & ((lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo > h) | (lo <= 0))
        neg_vol = ~nan & (v < 0)
    dup = pd.Series(ts).duplicated(keep=False).to_numpy()
    outside = ~session_mask(ts, sessions, interval)
    _add(problems, "nan", nan, ts)
    _add(problems, "infinite", inf, ts)
    _add(problems, "ohlc_inconsistent", ohlc, ts)
    _add(problems, "negative_volume", neg_vol, ts)
    _add(problems, "duplicate_ts", dup, ts)
    _add(problems, "outside_session", outside, ts)
    return ValidationReport(len(df), problems, nan | inf | ohlc | neg_vol | dup | outside)
