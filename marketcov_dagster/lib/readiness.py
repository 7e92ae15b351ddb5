"""Answers a reader asks before using the data: is this range ready, how fresh is each asset
(in buckets), and are the service levels met.

Built on the same coverage scan and freshness figures the CLI reports; no second implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.coverage import AssetCoverage, Segment, scan_sessions
from marketcov_dagster.lib.universe import AssetSpecification, SlaSettings
from marketcov_dagster.lib.windows import BadRangeError, window_start

BUCKETS = ("le_24h", "24h_48h", "gt_48h", "none")
MAX_RANGE_DAYS = 366 * 40


def freshness_bucket(lag_minutes: float | None) -> str:
    """``le_24h``, ``24h_48h``, ``gt_48h``, or ``none`` for an asset with no data."""
    if lag_minutes is None:
        return "none"
    if lag_minutes <= 24 * 60:
        return "le_24h"
    return "24h_48h" if lag_minutes <= 48 * 60 else "gt_48h"


def bucket_counts(lags: Sequence[float | None]) -> dict[str, int]:
    counts = dict.fromkeys(BUCKETS, 0)
    for lag in lags:
        counts[freshness_bucket(lag)] += 1
    return counts


@dataclass(frozen=True)
class Verdict:
    name: str
    target: str
    actual: str
    ok: bool


def sla_verdicts(sla: SlaSettings, coverage: Sequence[AssetCoverage], lags: Sequence[float | None]) -> list[Verdict]:
    """The universe's service levels judged now: the share of assets whose latest closed session
    is stored, and the worst lag (an asset with no data at all counts as behind)."""
    current = [a for a in coverage if a.last_expected and a.last_expected not in a.missing]
    pct = 100.0 * len(current) / len(coverage) if coverage else 100.0
    worst = max((lag for lag in lags if lag is not None), default=0.0)
    no_data = sum(1 for lag in lags if lag is None)
    lag_ok = worst <= sla.max_lag_hours * 60 and no_data == 0
    return [
        Verdict(
            "latest_session_stored",
            f">= {sla.min_current_pct:g}% of assets",
            f"{pct:.1f}% ({len(current)}/{len(coverage)})",
            pct >= sla.min_current_pct,
        ),
        Verdict(
            "max_lag",
            f"no asset behind by more than {sla.max_lag_hours:g} h",
            f"worst {worst / 60:.1f} h" + (f", {no_data} with no data" if no_data else ""),
            lag_ok,
        ),
    ]


@dataclass(frozen=True)
class RangeReadiness:
    asset_key: str
    start: str
    end: str
    complete: bool
    expected_sessions: int
    covered_sessions: int
    missing: list[str]
    partial: list[str]
    pending: list[str]  # sessions of the range that have not closed yet
    before_window: int  # sessions of the range older than the asset's window (never kept)
    segments: list[Segment]
    note: str | None = None  # what the answer did with the range (a start before the calendar begins)


def range_readiness(
    spec: AssetSpecification,
    calendar: TradingCalendar,
    rows_by_partition: Mapping[str, int],
    start: date,
    end: date,
    now: datetime,
) -> RangeReadiness:
    """Whether every session in ``[start, end]`` is stored and complete. A range reaching past the
    last closed session is not complete (its open sessions are ``pending``); sessions before the
    window count as missing and are also counted in ``before_window``."""
    if start > end:
        raise BadRangeError(f"start {start} is after end {end}")
    if (end - start) > timedelta(days=MAX_RANGE_DAYS):
        raise BadRangeError(f"the range {start} .. {end} is longer than {MAX_RANGE_DAYS // 366} years")
    sessions = calendar.sessions(start, end)
    last_closed = calendar.last_closed_session(now)
    closed = [d for d in sessions if last_closed is not None and d <= last_closed]
    pending = [d.isoformat() for d in sessions if last_closed is None or d > last_closed]
    scan = scan_sessions(spec, calendar, closed, rows_by_partition)
    first = window_start(calendar, spec.window_days, now)
    covered = sum(s.sessions for s in scan.segments)
    return RangeReadiness(
        asset_key=spec.key_str,
        start=start.isoformat(),
        end=end.isoformat(),
        complete=not pending and covered == len(closed),
        expected_sessions=len(sessions),
        covered_sessions=covered,
        missing=scan.missing,
        partial=scan.partial,
        pending=pending,
        before_window=sum(1 for d in closed if d < first),
        segments=scan.segments,
        note=(
            f"start {start} is before the {calendar.name} calendar's first session {calendar.first_session}: "
            "sessions are counted from there"
            if start < calendar.first_session
            else None
        ),
    )
