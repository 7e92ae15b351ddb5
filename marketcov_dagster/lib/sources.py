"""Derived data only from verified sources.

Before a derived partition (candles, weekly bars, indicators) is built, every source partition it
reads must have no failed check verdict in force (``Warehouse.failed_verdicts``); otherwise the run
names the source partition and the check and writes nothing. A derived partition records the
checksum of its source as it was when built (``partition_lineage.source_checksum``), so
``matches_source`` fails once the source has been rewritten or damaged since, even where the
derived bars still equal the candles of what the source holds now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.intervals import DERIVED_FROM, Interval
from marketcov_dagster.lib.warehouse import Warehouse


class SourceFailedChecksError(ValueError):
    """A source partition of what was asked for failed a check: nothing derived was written."""


def require_verified(warehouse: Warehouse, symbol: str, source: str, keys: Sequence[str], label: str) -> None:
    """Refuse, before anything is written, when a source session among ``keys`` failed a check."""
    failed = warehouse.failed_verdicts(symbol, source, keys)
    if not failed:
        return
    shown = [
        f"ohlcv/{source}/{symbol} {session} failed {v.check_name} ({v.description})"
        for session in sorted(failed)
        for v in failed[session]
    ]
    more = f"; and {len(shown) - 3} more" if len(shown) > 3 else ""
    raise SourceFailedChecksError(
        f"{label}: not derived from unverified source partitions: {'; '.join(shown[:3])}{more}. "
        "Heal the source first (marketcov backfill --missing re-fetches it), then derive again"
    )


def unverified(warehouse: Warehouse, symbol: str, interval: str, sessions: Sequence[date]) -> list[dict[str, str]]:
    """The failed checks in force on ``sessions`` of one asset, for a read to name (an adjusted
    answer's ``unverified``, the CLI's note): ``session``, ``check``, ``description``."""
    failed = warehouse.failed_verdicts(symbol, interval, [d.isoformat() for d in sessions])
    return [
        {"session": s, "check": v.check_name, "description": v.description} for s in sorted(failed) for v in failed[s]
    ]


def source_sessions(calendar: TradingCalendar, interval: Interval, day: date) -> list[date]:
    """The source sessions a derived partition of ``day`` is built from: its own session, or for a
    weekly bar the sessions of its week (none for a session that does not end its week)."""
    if interval != "1w":
        return [day]
    return calendar.week_sessions(day) if calendar.bounds(day).week_open_ms is not None else []


def _combined(checksums: Mapping[str, str], sessions: Sequence[str]) -> str | None:
    present = [s for s in sessions if s in checksums]
    if not present:
        return None
    if len(present) == 1:
        return checksums[present[0]]
    return hashlib.sha256("|".join(f"{s}:{checksums[s]}" for s in present).encode()).hexdigest()


def recorded_source_checksums(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, interval: Interval, days: Sequence[date]
) -> dict[date, str | None]:
    """Per derived session: the checksum its source's lineage records now (a week's: one digest)."""
    source = DERIVED_FROM[interval]
    wanted = {d: [s.isoformat() for s in source_sessions(calendar, interval, d)] for d in days}
    keys = sorted({k for ks in wanted.values() for k in ks})
    rows = warehouse.latest_lineage_many(symbol, source, keys) if keys else {}
    checksums = {k: r.checksum for k, r in rows.items()}
    return {d: _combined(checksums, ks) for d, ks in wanted.items()}


def stored_source_checksums(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, interval: Interval, days: Sequence[date]
) -> dict[date, str | None]:
    """Per derived session: the checksum of the source bars stored now (hashed, not read from
    lineage), for the source sessions that have lineage; a week's as one digest."""
    source = DERIVED_FROM[interval]
    wanted = {d: source_sessions(calendar, interval, d) for d in days}
    sessions = sorted({s for ss in wanted.values() for s in ss})
    if not sessions:
        return dict.fromkeys(days)
    written = warehouse.latest_lineage_many(symbol, source, [s.isoformat() for s in sessions])
    windows = calendar.partition_windows_ms(sessions, source)
    df = warehouse.read_bars(symbol, source, windows[0][0], windows[-1][1])
    ts = df["ts"].to_numpy(dtype=np.int64)
    hashes: dict[str, str] = {}
    for s, (w0, w1) in zip(sessions, windows, strict=True):
        if s.isoformat() in written:
            lo, hi = np.searchsorted(ts, [w0, w1])
            hashes[s.isoformat()] = bars_checksum(df.iloc[int(lo) : int(hi)].reset_index(drop=True))
    return {d: _combined(hashes, [s.isoformat() for s in ss]) for d, ss in wanted.items()}


def source_change(built_from: str | None, recorded: str | None, stored: str | None) -> str | None:
    """Why a derived partition no longer matches its source, or None: its source was rewritten
    (its lineage's checksum moved) or damaged (its bars no longer hash to their lineage)."""
    if built_from is None:
        return None  # built before sources were recorded: the candle comparison alone judges it
    if recorded != built_from:
        return f"its source was rewritten since it was built (from {built_from[:12]}…, now {str(recorded)[:12]}…)"
    if stored != recorded:
        return f"its source's stored bars no longer match their checksum ({str(stored)[:12]}…, not {built_from[:12]}…)"
    return None
