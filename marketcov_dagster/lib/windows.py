"""Which sessions an asset's window holds, and which sessions a backfill request means."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from marketcov_dagster.lib.calendars import TradingCalendar

DEFAULT_BACKFILL_SESSIONS = 3


class BadRangeError(ValueError):
    """A requested date range is malformed or holds no session of the asset's window."""


def window_start(calendar: TradingCalendar, window_days: int, now: datetime) -> date:
    """First session of a window reaching ``window_days`` calendar days back from ``now``."""
    today = now.astimezone(calendar.tz).date()
    lo = max(today - timedelta(days=window_days), calendar.first_session)
    sessions = calendar.sessions(lo, today + timedelta(days=7))
    return sessions[0] if sessions else lo


def expected_sessions(calendar: TradingCalendar, window_days: int, now: datetime) -> list[date]:
    """Sessions of the window that have closed by ``now``."""
    last = calendar.last_closed_session(now)
    if last is None:
        return []
    return calendar.sessions(window_start(calendar, window_days, now), last)


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: str, field: str) -> date:
    """A calendar day written exactly ``YYYY-MM-DD`` (``date.fromisoformat`` also takes
    ``20261102`` and ``2026-W45-1``, which nobody means on a command line)."""
    if not _DAY.fullmatch(value):
        raise BadRangeError(f"{field}: {value!r} is not a date (use YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError as e:
        raise BadRangeError(f"{field}: {value!r} is not a date ({e})") from None


def backfill_sessions(
    calendar: TradingCalendar,
    window_days: int,
    now: datetime,
    start: date | None = None,
    end: date | None = None,
    default_sessions: int = DEFAULT_BACKFILL_SESSIONS,
    include_open: bool = False,
    whole_week: bool = False,
) -> list[date]:
    """Sessions to fetch: ``[start, end]`` clipped to the window and to sessions that have
    opened, or, when no range is given, the latest ``default_sessions`` closed sessions plus,
    with ``include_open`` (minute bars), the session trading now, so that a catch-up with no
    dates brings a live asset back to fresh; with ``whole_week`` (daily and weekly bars) reaching
    back to the first session of the newest week that has ended, so its weekly bar can be built."""
    if start and end and start > end:
        raise BadRangeError(f"start {start} is after end {end}")
    first = window_start(calendar, window_days, now)
    last_open = calendar.last_opened_session(now)
    if last_open is None:
        raise BadRangeError(f"{calendar.name} has no session before {now.isoformat()}")
    if start is None and end is None:
        expected = expected_sessions(calendar, window_days, now)
        closed = expected[-default_sessions:]
        week = calendar.last_closed_week(now) if whole_week else None
        if week is not None and closed:
            closed = [d for d in expected if d >= min(calendar.week_sessions(week)[0], closed[0])]
        if include_open and last_open not in closed:
            closed.append(last_open)
        return closed
    lo = max(start or first, first)
    hi = min(end or last_open, last_open)
    sessions = calendar.sessions(lo, hi) if lo <= hi else []
    if not sessions:
        raise BadRangeError(
            f"no {calendar.name} session between {start or first} and {end or last_open} inside the "
            f"window {first} .. {last_open} (window starts {window_days} days back; future sessions "
            "cannot be fetched)"
        )
    return sessions
