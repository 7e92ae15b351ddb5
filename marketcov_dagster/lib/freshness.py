"""Freshness from data, not runs: how far the newest stored bar trails what the calendar says
should exist by now.

lag = expected latest bar end - latest stored bar end, where the expected end comes from the
exchange calendar: during a session it is ``now - vendor delay`` (floored to the bar), outside
sessions (nights, weekends, holidays, after an early close) it is the last session's close. So
a market that is closed never looks stale, and a 24/7 market never sleeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Protocol

from marketcov_dagster.lib.calendars import TradingCalendar, get_calendar
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval, bar_ms, is_intraday
from marketcov_dagster.lib.universe import AssetSpecification, IntervalSettings


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def expected_end_ms(calendar: TradingCalendar, interval: Interval, now: datetime, delay_minutes: float) -> int | None:
    """End (epoch ms) of the newest bar a vendor should have served by ``now``; None before any."""
    t = now - timedelta(minutes=delay_minutes)
    t_ms = int(t.timestamp() * 1000)
    if interval in ("1d", "1w"):
        last = calendar.last_closed_session(t) if interval == "1d" else calendar.last_closed_week(t)
        return calendar.bounds(last).close_ms if last else None
    opened = calendar.last_opened_session(t)
    if opened is None:
        return None
    b = calendar.bounds(opened)
    if t_ms >= b.close_ms:
        return b.close_ms
    ends = b.bar_ends(interval)
    done = ends[ends <= t_ms]
    if len(done):
        return int(done[-1])
    # the session has opened but none of its bars has ended yet: the previous close is expected
    previous = calendar.last_closed_session(t)
    return calendar.bounds(previous).close_ms if previous else None


def bar_end_ms(calendar: TradingCalendar, interval: Interval, ts_ms: int) -> int:
    """End of the bar opening at ``ts_ms``: a bar length later but no later than its session's
    close (the last bar of an early close is short), or the close of a daily bar's session."""
    day = _dt(ts_ms).astimezone(calendar.tz).date()
    if interval == "1w":  # stamped at the week's first open, it ends at the week's last close
        week = calendar.week_sessions(day) if calendar.is_session(day) else []
        return calendar.bounds(week[-1]).close_ms if week else ts_ms + 7 * 24 * 60 * MINUTE_MS
    close = calendar.bounds(day).close_ms if calendar.is_session(day) else None
    if interval != "1d":
        end = ts_ms + bar_ms(interval)
        return min(end, close) if close is not None and ts_ms < close else end
    return close if close is not None else ts_ms + 24 * 60 * MINUTE_MS


@dataclass(frozen=True)
class Freshness:
    """The freshness of one (symbol, interval) at one instant."""

    asset_key: str
    symbol: str
    interval: str
    calendar: str
    checked_at: str
    expected_end: str | None
    latest_end: str | None
    lag_minutes: float | None
    threshold_minutes: float
    stale: bool
    no_data: bool = False  # nothing stored yet: not an incident of lag (lag starts with the first bars)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe_lag(self) -> str:
        if self.latest_end is None:
            return "no data yet"
        return human_minutes(self.lag_minutes or 0.0)


def human_minutes(minutes: float) -> str:
    """A duration a person reads at a glance: ``45 min``, ``2h 05m``, ``3d 8h``."""
    m = int(minutes)
    if m < 60:
        return f"{m} min"
    hours, m = divmod(m, 60)
    if hours < 24:
        return f"{hours}h {m:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def freshness(spec: AssetSpecification, latest_ts_ms: int | None, now: datetime) -> Freshness:
    """Freshness of ``spec`` given the open time of its newest stored bar (None: no bars)."""
    cal = get_calendar(spec.calendar)
    expected = expected_end_ms(cal, spec.interval, now, spec.vendor_delay_minutes)
    latest = bar_end_ms(cal, spec.interval, latest_ts_ms) if latest_ts_ms is not None else None
    lag: float | None
    if latest is None:
        lag, stale = None, False
    elif expected is None:
        lag, stale = 0.0, False
    else:
        lag = max(0.0, (expected - latest) / MINUTE_MS)
        stale = lag > spec.freshness_threshold_minutes
    return Freshness(
        asset_key=spec.key_str,
        symbol=spec.symbol,
        interval=spec.interval,
        calendar=spec.calendar,
        checked_at=now.astimezone(UTC).isoformat(),
        expected_end=_dt(expected).isoformat() if expected is not None else None,
        latest_end=_dt(latest).isoformat() if latest is not None else None,
        lag_minutes=round(lag, 1) if lag is not None else None,
        threshold_minutes=spec.freshness_threshold_minutes,
        stale=stale,
        no_data=latest is None,
    )


def ended_by_ms(calendar: TradingCalendar, interval: Interval, now: datetime) -> int:
    """The latest bar open time whose bar has ended by ``now``: a bar stamped later (a bar dated
    in the future, or today's forming daily bar) must not make an asset look fresh."""
    if interval != "1d":
        return calendar.last_ended_start_ms(interval, now)
    last = calendar.last_closed_session(now)
    return calendar.bounds(last).open_ms if last else -1


def ended_cutoffs(specs: Sequence[AssetSpecification], now: datetime) -> dict[tuple[str, str], int]:
    """``ended_by_ms`` per (symbol, interval), for ``Warehouse.latest_bar_ts``."""
    return {(s.symbol, s.interval): ended_by_ms(get_calendar(s.calendar), s.interval, now) for s in specs}


class LatestBars(Protocol):
    def latest_bar_ts(
        self,
        pairs: Sequence[tuple[str, str]],
        not_after: Mapping[tuple[str, str], int] | None = None,
        indicators: bool = False,
    ) -> dict[tuple[str, str], int]: ...


def by_table(specs: Sequence[AssetSpecification]) -> list[tuple[bool, list[AssetSpecification]]]:
    """``specs`` split by where their rows live: bars (False) and indicator values (True)."""
    return [(ind, group) for ind in (False, True) if (group := [s for s in specs if s.indicators == ind])]


def freshness_now(store: LatestBars, specs: Sequence[AssetSpecification], now: datetime) -> list[Freshness]:
    """Freshness of every spec (in ``specs``' order) from its newest stored row that has ended by
    ``now``: bars from the bars table, indicator assets from their own values."""
    by_key: dict[str, Freshness] = {}
    for indicators, group in by_table(specs):
        pairs = [(s.symbol, s.interval) for s in group]
        latest = store.latest_bar_ts(pairs, ended_cutoffs(group, now), indicators)
        by_key.update((f.asset_key, f) for f in freshness_all(group, latest, now))
    return [by_key[s.key_str] for s in specs]


def freshness_all(
    specs: Sequence[AssetSpecification], latest: Mapping[tuple[str, str], int], now: datetime
) -> list[Freshness]:
    """Freshness of every spec of one table; ``latest`` maps (symbol, interval) to the newest row's open time."""
    return [freshness(s, latest.get((s.symbol, s.interval)), now) for s in specs]


def root_causes(results: Sequence[Freshness], specs: Sequence[AssetSpecification]) -> list[Freshness]:
    """The results worth an incident: an asset computed from another (resampled candles, indicators)
    that is stale because what it is computed from is stale is left out (one mail for the minute
    bars, not one per derived asset), and so is left as it was."""
    stale = {f.asset_key for f in results if f.stale}
    upstream = {s.key_str: s.upstream_key_str for s in specs}
    return [f for f in results if not (f.stale and upstream.get(f.asset_key) in stale)]


def longest_pause(calendar: TradingCalendar, today: date, until: str = "open") -> timedelta:
    """The longest stretch from one session's close to the next session's open (``until="open"``)
    or close (``"close"``) within a year either side of ``today``: a long weekend, Christmas, an
    exceptional closure."""
    sessions = [calendar.bounds(s) for s in calendar.sessions(today - timedelta(days=366), today + timedelta(days=366))]
    gaps = [(b.open_ms if until == "open" else b.close_ms) - a.close_ms for a, b in pairwise(sessions)]
    return timedelta(milliseconds=max(gaps, default=0))


def ui_freshness_windows(
    calendar: TradingCalendar, interval: Interval, settings: IntervalSettings, today: date
) -> tuple[timedelta, timedelta | None]:
    """(fail, warn) windows for Dagster's ``FreshnessPolicy.time_window``.

    Dagster judges freshness by the newest materialization of *any* partition, so these windows
    only say "the schedules are writing": the longest pause between scheduled writes the calendar
    allows, plus the alert threshold. Closed markets therefore never show as degraded; the
    per-asset truth comes from the freshness sensor. 24/7 markets also get a warn window."""
    threshold = timedelta(minutes=settings.freshness_threshold_minutes)
    if not is_intraday(interval):
        pause = timedelta(days=1) if calendar.always_open else longest_pause(calendar, today, "close")
    else:
        every = timedelta(minutes=settings.refresh_every_minutes)
        pause = every if calendar.always_open else longest_pause(calendar, today, "open") + every
    fail = pause + timedelta(minutes=settings.schedule_delay_minutes) + threshold
    warn = fail - threshold / 2 if calendar.always_open else None
    return fail, warn
