"""Exchange calendars: sessions, session bounds and expected bar counts.

``exchange_calendars`` is the source of truth for sessions, early closes and holidays. A session
is identified by its date in exchange time; its bounds are UTC instants. The ``24/7`` calendar
gives one UTC day per session, which is what crypto markets use.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from marketcov_dagster.lib.intervals import MINUTE_MS, Interval, bar_ms

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import exchange_calendars as xcals


class UnknownCalendarError(ValueError):
    pass


def calendar_names() -> list[str]:
    return sorted(xcals.get_calendar_names(include_aliases=True))


@dataclass(frozen=True)
class SessionBounds:
    """One session: its date and UTC bounds in epoch milliseconds (``[open_ms, close_ms)``)."""

    session: date
    open_ms: int
    close_ms: int
    break_start_ms: int | None = None
    break_end_ms: int | None = None
    week_open_ms: int | None = None  # on the last session of a week only: the open of its first session

    def expected_bars(self, interval: Interval) -> int:
        if interval == "1d":
            return 1
        if interval == "1w":  # the week's bar belongs to its last session
            return 0 if self.week_open_ms is None else 1
        if interval == "1m":
            minutes = (self.close_ms - self.open_ms) // MINUTE_MS
            if self.break_start_ms is not None and self.break_end_ms is not None:
                minutes -= (self.break_end_ms - self.break_start_ms) // MINUTE_MS
            return int(minutes)
        return len(self.bar_starts(interval))

    def _minutes(self) -> np.ndarray:
        starts = np.arange(self.open_ms, self.close_ms, MINUTE_MS, dtype=np.int64)
        if self.break_start_ms is not None and self.break_end_ms is not None:
            starts = starts[(starts < self.break_start_ms) | (starts >= self.break_end_ms)]
        return starts

    def bar_starts(self, interval: Interval) -> np.ndarray:
        """Epoch-ms open times of every bar the calendar expects in this session; intraday bars
        longer than a minute are anchored at the session open (buckets the session has minutes in)."""
        if interval == "1d":
            return np.array([self.open_ms], dtype=np.int64)
        if interval == "1w":
            return np.array([] if self.week_open_ms is None else [self.week_open_ms], dtype=np.int64)
        minutes = self._minutes()
        return minutes if interval == "1m" else np.unique(self.bucket_of(minutes, interval))

    def bucket_of(self, ts: np.ndarray, interval: Interval) -> np.ndarray:
        """The open time of the intraday ``interval`` bar each time in ``ts`` falls in, counting
        whole bar lengths from the session open."""
        step = bar_ms(interval)
        return self.open_ms + (ts - self.open_ms) // step * step

    def bar_ends(self, interval: Interval) -> np.ndarray:
        """Epoch-ms end of each bar of ``bar_starts``: a bar ends after its last minute the session
        trades (the last bar of an early close, or before a break, is short)."""
        if interval == "1d":
            return np.array([self.close_ms], dtype=np.int64)
        if interval == "1w":
            return np.array([] if self.week_open_ms is None else [self.close_ms], dtype=np.int64)
        minutes = self._minutes()
        if interval == "1m" or not len(minutes):
            return minutes + MINUTE_MS
        bucket = self.bucket_of(minutes, interval)
        last = np.flatnonzero(np.diff(bucket, append=bucket[-1] + 1))  # each bucket's last minute
        return minutes[last] + MINUTE_MS


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


class TradingCalendar:
    """Thin, cached view over one ``exchange_calendars`` calendar."""

    def __init__(self, name: str) -> None:
        if name not in xcals.get_calendar_names(include_aliases=True):
            raise UnknownCalendarError(
                f"unknown calendar {name!r}; use an exchange_calendars name such as 'XNYS' or '24/7'"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._cal = xcals.get_calendar(name)
        self.name = name
        self.tz = ZoneInfo(str(self._cal.tz))
        schedule = self._cal.schedule
        self._dates: list[date] = [d.date() for d in schedule.index]
        self._index = {d: i for i, d in enumerate(self._dates)}
        self._open = schedule["open"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
        self._close = schedule["close"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
        bs = schedule["break_start"]
        self._has_breaks = bool(bs.notna().any())
        self._break_start = bs
        self._break_end = schedule["break_end"]
        # weeks (Monday to Sunday, by session date): the index of each session's week's first and last session
        week = np.array([(d - timedelta(days=d.weekday())).toordinal() for d in self._dates], dtype=np.int64)
        new_week = np.flatnonzero(np.diff(week, prepend=week[0] - 1))
        ends = np.append(new_week[1:], len(week)) - 1
        self._week_first = np.repeat(new_week, ends - new_week + 1)
        self._week_last = np.repeat(ends, ends - new_week + 1)

    @property
    def first_session(self) -> date:
        return self._dates[0]

    @property
    def last_session(self) -> date:
        return self._dates[-1]

    @property
    def always_open(self) -> bool:
        return self.name == "24/7"

    def is_session(self, day: date) -> bool:
        return day in self._index

    @cached_property
    def _keys(self) -> list[str]:
        return [d.isoformat() for d in self._dates]

    def session_keys(self, days: Sequence[date]) -> list[str]:
        """The ISO dates of sessions (partition keys), from a table: years of them at once."""
        index, keys = self._index, self._keys
        try:
            return [keys[index[d]] for d in days]
        except KeyError as e:
            raise ValueError(f"{e.args[0].isoformat()} is not a {self.name} session") from None

    def sessions(self, start: date, end: date) -> list[date]:
        """Sessions with ``start <= session <= end``."""
        return self._dates[bisect_left(self._dates, start) : bisect_right(self._dates, end)]

    def next_session(self, day: date) -> date | None:
        """The session after ``day`` (any date), or None past the calendar's end."""
        i = bisect_right(self._dates, day)
        return self._dates[i] if i < len(self._dates) else None

    def bounds(self, day: date) -> SessionBounds:
        i = self._index.get(day)
        if i is None:
            raise ValueError(f"{day.isoformat()} is not a {self.name} session")
        bstart = bend = None
        if self._has_breaks and pd.notna(self._break_start.iloc[i]):
            bstart = _ms(pd.Timestamp(self._break_start.iloc[i]))
            bend = _ms(pd.Timestamp(self._break_end.iloc[i]))
        week_open = int(self._open[self._week_first[i]]) if self._week_last[i] == i else None
        return SessionBounds(day, int(self._open[i]), int(self._close[i]), bstart, bend, week_open)

    def week_sessions(self, day: date) -> list[date]:
        """The sessions of ``day``'s week (Monday to Sunday), in order."""
        i = self._index[day]
        return self._dates[int(self._week_first[i]) : int(self._week_last[i]) + 1]

    def last_closed_week(self, now: datetime) -> date | None:
        """The last session of the newest week whose last session has closed by ``now``."""
        last = self.last_closed_session(now)
        if last is None:
            return None
        i = self._index[last]
        if self._week_last[i] != i:
            i = int(self._week_first[i]) - 1
        return self._dates[i] if i >= 0 else None

    def non_sessions(self, start: date, end: date, weekdays_only: bool = False) -> list[date]:
        """Dates in ``[start, end]`` that are not sessions; only Mon-Fri ones if ``weekdays_only``."""
        out = []
        d = start
        while d <= end:
            if d not in self._index and not (weekdays_only and d.weekday() >= 5):
                out.append(d)
            d += timedelta(days=1)
        return out

    def trades_on_weekends(self) -> bool:
        return any(d.weekday() >= 5 for d in self._dates[-30:])

    def last_closed_session(self, now: datetime) -> date | None:
        now_ms = int(now.timestamp() * 1000)
        i = int(np.searchsorted(self._close, now_ms, side="right")) - 1
        return self._dates[i] if i >= 0 else None

    def last_opened_session(self, now: datetime) -> date | None:
        now_ms = int(now.timestamp() * 1000)
        i = int(np.searchsorted(self._open, now_ms, side="right")) - 1
        return self._dates[i] if i >= 0 else None

    def last_ended_start_ms(self, interval: Interval, now: datetime) -> int:
        """For intraday bars: the latest bar open time whose bar has surely ended by ``now`` (a
        full bar length ago, or the last, possibly short, bar of the last closed session); for
        weekly bars the open of the newest week whose last session has closed."""
        if interval == "1w":
            week = self.last_closed_week(now)
            return self.bounds(week).week_open_ms or -1 if week else -1
        cut = int(now.timestamp() * 1000) - bar_ms(interval)
        last = self.last_closed_session(now)
        if last is None:
            return cut
        return max(cut, int(self.bounds(last).bar_starts(interval)[-1]))

    def closed_gaps_ms(self, start: date, end: date) -> list[tuple[int, int]]:
        """``[close, next open)`` between consecutive sessions from ``start`` to ``end``: times at
        which no bar of any interval may open (nights, weekends, holidays). Empty for 24/7."""
        days = self.sessions(start, end)
        bounds = [self.bounds(d) for d in days]
        return [(a.close_ms, b.open_ms) for a, b in pairwise(bounds) if b.open_ms > a.close_ms]

    def day_window_ms(self, day: date) -> tuple[int, int]:
        """The calendar day ``day`` in exchange time, as UTC epoch-ms ``[start, end)``."""
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        end = start + timedelta(days=1)
        end = datetime(end.year, end.month, end.day, tzinfo=self.tz)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    @cached_property
    def _day_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """``day_window_ms`` of every session, as two epoch-ms arrays (built once, on first use)."""
        pairs = np.array([self.day_window_ms(d) for d in self._dates], dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    def partition_window_ms(self, day: date, interval: Interval | None = None) -> tuple[int, int]:
        """The warehouse window a session's partition owns: its calendar day, widened to the
        session bounds should a session ever cross midnight in exchange time. Weekly bars: the
        week's last session owns the whole week (its bar is stamped at the week's first open),
        the other sessions an empty window at the week's start."""
        if interval == "1w":
            return self.partition_windows_ms([day], interval)[0]
        b = self.bounds(day)
        w0, w1 = self.day_window_ms(day)
        return min(w0, b.open_ms), max(w1, b.close_ms)

    def partition_windows_ms(self, days: Sequence[date], interval: Interval | None = None) -> list[tuple[int, int]]:
        """``partition_window_ms`` of many sessions at once (vectorised: a range of years costs a
        millisecond, not one time-zone conversion per day)."""
        w0, w1 = self.partition_window_arrays(days, interval)
        return list(zip(w0.tolist(), w1.tolist(), strict=True))

    def partition_window_arrays(
        self, days: Sequence[date], interval: Interval | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``partition_windows_ms`` as two epoch-ms arrays, the windows' starts and their ends."""
        idx = np.array([self._index[d] for d in days], dtype=np.int64)
        day_start, day_end = self._day_windows
        w0 = np.minimum(day_start[idx], self._open[idx])
        w1 = np.maximum(day_end[idx], self._close[idx])
        if interval == "1w":  # the week's first session's start; empty unless the week's last session
            first = self._week_first[idx]
            week_start = np.minimum(day_start[first], self._open[first])
            return week_start, np.where(self._week_last[idx] == idx, w1, week_start)
        return w0, w1


@lru_cache(maxsize=64)
def get_calendar(name: str) -> TradingCalendar:
    return TradingCalendar(name)
