"""Which sessions ``marketcov backfill --missing`` fills, and in how few runs.

A session is to fill when coverage shows it missing or partial (coverage reconciled with the
warehouse counts a session whose bars are gone, ``lost``, as missing). Each
asset's sessions to fill are cut into runs of consecutive sessions; assets with the same run
share one range run, so a hole that every symbol has (the days a machine was off) is one run
per group, and nothing that is already complete is fetched again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import TypeVar

from marketcov_dagster.lib.calendars import TradingCalendar

T = TypeVar("T")


def consecutive_runs(calendar: TradingCalendar, sessions: Iterable[date]) -> list[tuple[date, date]]:
    """``sessions`` as (first, last) runs of consecutive calendar sessions."""
    days = sorted(set(sessions))
    if not days:
        return []
    index = {d: i for i, d in enumerate(calendar.sessions(days[0], days[-1]))}
    days = [d for d in days if d in index]  # never a day the calendar does not trade
    if not days:
        return []
    runs: list[tuple[date, date]] = []
    start = prev = days[0]
    for d in days[1:]:
        if index[d] != index[prev] + 1:
            runs.append((start, prev))
            start = d
        prev = d
    runs.append((start, prev))
    return runs


def fill_runs(calendar: TradingCalendar, holes: Mapping[T, Sequence[date]]) -> list[tuple[list[T], date, date]]:
    """The range runs that fill ``holes`` (asset -> sessions): assets with the same run together."""
    by_range: dict[tuple[date, date], list[T]] = defaultdict(list)
    for asset, sessions in holes.items():
        for run in consecutive_runs(calendar, sessions):
            by_range[run].append(asset)
    return [(assets, first, last) for (first, last), assets in sorted(by_range.items(), key=lambda kv: kv[0])]
