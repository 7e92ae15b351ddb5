"""When scheduled runs tick and which sessions each tick fetches, from the exchange calendar.

* Daily bars: once per trading weekday at the regular close plus a delay, in exchange time (a
  holiday tick fetches nothing); 24/7 markets just after 00:00 UTC, for the UTC day that closed.
* Minute bars: every N minutes during the session (today's partition, only the new bars), the
  last tick within N minutes after the close fetching the settled session whole; 24/7 markets
  around the clock, the first tick of a UTC day also settling the day before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.intervals import MINUTE_MS

_CRON_DAYS = {0: "1", 1: "2", 2: "3", 3: "4", 4: "5", 5: "6", 6: "0"}


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str


def _local(calendar: TradingCalendar, ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, calendar.tz)


def _recent_sessions(calendar: TradingCalendar, today: date) -> list[date]:
    return calendar.sessions(today - timedelta(days=120), today)


def regular_hours(calendar: TradingCalendar, today: date) -> tuple[time, time]:
    """The most common open and close times (exchange time) of recent sessions: early closes and
    DST do not move them, since exchange time is what the exchange keeps."""
    opens: Counter[time] = Counter()
    closes: Counter[time] = Counter()
    for s in _recent_sessions(calendar, today):
        b = calendar.bounds(s)
        opens[_local(calendar, b.open_ms).time()] += 1
        closes[_local(calendar, b.close_ms).time()] += 1
    return opens.most_common(1)[0][0], closes.most_common(1)[0][0]


def _trading_weekdays(calendar: TradingCalendar, today: date) -> str:
    days = sorted({s.weekday() for s in _recent_sessions(calendar, today)})
    return ",".join(_CRON_DAYS[d] for d in days)


def daily_cron(calendar: TradingCalendar, delay_minutes: int, today: date) -> Cron:
    if calendar.always_open:
        return Cron(f"{delay_minutes % 60} {delay_minutes // 60} * * *", "UTC")
    _, close = regular_hours(calendar, today)
    at = datetime.combine(today, close) + timedelta(minutes=delay_minutes)
    if at.date() != today:
        raise ValueError(f"a schedule delay of {delay_minutes} minutes runs past midnight after the close {close}")
    return Cron(f"{at.minute} {at.hour} * * {_trading_weekdays(calendar, today)}", str(calendar.tz))


def intraday_cron(calendar: TradingCalendar, every_minutes: int, delay_minutes: int, today: date) -> Cron:
    """Every ``every_minutes``, offset by the delay so a tick lands just after the close."""
    minutes = f"{delay_minutes % every_minutes}-59/{every_minutes}"
    if calendar.always_open:
        return Cron(f"{minutes} * * * *", "UTC")
    opens, close = regular_hours(calendar, today)
    last = datetime.combine(today, close) + timedelta(minutes=every_minutes)
    hours = f"{opens.hour}-{min(last.hour, 23)}"
    return Cron(f"{minutes} {hours} * * {_trading_weekdays(calendar, today)}", str(calendar.tz))


def daily_session_for_tick(calendar: TradingCalendar, tick: datetime) -> date | None:
    """The session whose daily bar a daily tick fetches; None on a holiday (or before the close)."""
    last = calendar.last_closed_session(tick)
    if last is None or calendar.always_open:
        return last
    return last if last == tick.astimezone(calendar.tz).date() else None


def intraday_sessions_for_tick(calendar: TradingCalendar, tick: datetime, every_minutes: int) -> list[date]:
    """Sessions an intraday tick refreshes: the one trading now, or the one that closed less than
    ``every_minutes`` ago (its final, whole fetch); nothing on holidays, nights and weekends."""
    t_ms = int(tick.timestamp() * 1000)
    grace = every_minutes * MINUTE_MS
    out = []
    opened = calendar.last_opened_session(tick)
    if opened is not None:
        closed = calendar.last_closed_session(tick)
        if closed is not None and closed != opened and t_ms - calendar.bounds(closed).close_ms <= grace:
            out.append(closed)  # a 24/7 day that just ended, settled with the next day's first tick
        b = calendar.bounds(opened)
        if b.open_ms < t_ms <= b.close_ms + grace:
            out.append(opened)
    return out
