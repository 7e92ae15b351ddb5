"""Resampled candles: longer intraday bars built from the stored minute bars of each session,
and weekly bars built from the stored daily bars of each week.

A bar of ``N`` minutes opens at ``session open + k * N`` (XNYS at 09:30 New York time, crypto at
00:00 UTC) and holds the session's minutes in ``[start, start + N)``: open = first open, high =
max, low = min, close = last close, volume = sum. The session's last bar is short where the
session ends mid-bucket (an early close). A weekly bar (Monday to Sunday) opens at its first
session's open, aggregates its sessions' daily bars the same way, and belongs to the partition
of the week's last session. A bar is written only once it has ended, and only from the source
bars that exist, so derived data never claims more than its source holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import COLUMNS, empty_frame, session_index, ts_iso
from marketcov_dagster.lib.calendars import SessionBounds, TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import PartitionResult, SessionNotStartedError, expected_as_of
from marketcov_dagster.lib.intervals import DERIVED_FROM, Interval
from marketcov_dagster.lib.sources import (
    recorded_source_checksums,
    require_verified,
    source_change,
    stored_source_checksums,
)
from marketcov_dagster.lib.verify import MATCHES_SOURCE, CheckOutcome
from marketcov_dagster.lib.warehouse import PartitionWrite, Warehouse


class SourceNotMaterializedError(ValueError):
    """A derived partition was asked for while its source partition holds nothing yet."""


def require_source(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    source: Interval,
    days: Sequence[date],
    now_ms: int,
    label: str,
) -> None:
    """Refuse, before anything is read or written, sessions (sorted) that have not opened yet or
    whose ``source`` bars were never written; ``label`` names what was asked for."""
    if calendar.bounds(days[-1]).open_ms > now_ms:  # days are sorted: the last opens last
        future = [d.isoformat() for d in days if calendar.bounds(d).open_ms > now_ms]
        raise SessionNotStartedError(f"{label}: session(s) {future} have not opened yet")
    keys = calendar.session_keys(days)
    written = warehouse.written_sessions(symbol, source, keys[0], keys[-1])
    if not written.issuperset(keys):
        missing = [k for k in keys if k not in written]
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SourceNotMaterializedError(
            f"{label}: no {source} bars written for {len(missing)} session(s) ({shown}); "
            f"materialize ohlcv/{source}/{symbol} for them first"
        )


def derived_vendor(source: Interval) -> str:
    """What the lineage records as the "vendor" of a derived partition."""
    return f"resampled:{source}"


def resample_session(minutes: pd.DataFrame, bounds: SessionBounds, interval: Interval, now_ms: int) -> pd.DataFrame:
    """The ``interval`` bars of one session from its canonical minute bars (sorted by ``ts``, all
    inside the session); bars that have not ended by ``now_ms`` are left out."""
    return resample_sessions(minutes, [bounds], interval, now_ms)[0]


def resample_sessions(
    minutes: pd.DataFrame, bounds: Sequence[SessionBounds], interval: Interval, now_ms: int
) -> list[pd.DataFrame]:
    """``resample_session`` of every session at once, in one vectorised pass: ``minutes`` are the
    canonical minute bars of the sessions (sorted by ``ts``, each inside one of ``bounds``)."""
    starts = [b.bar_starts(interval) for b in bounds]
    if minutes.empty or not any(len(x) for x in starts):
        return [empty_frame() for _ in bounds]
    allowed = np.concatenate(starts)  # every session's bucket starts, in time order
    allowed_end = np.concatenate([b.bar_ends(interval) for b in bounds])
    owner = np.repeat(np.arange(len(bounds)), [len(x) for x in starts])
    ts = minutes["ts"].to_numpy(dtype=np.int64)
    # a trading minute's bucket is the latest bucket start at or before it (anchored at its session's open)
    k = np.searchsorted(allowed, ts, side="right") - 1
    first = np.flatnonzero(np.diff(k, prepend=k[0] - 1))  # each bucket's first minute
    last = np.append(first[1:], len(k)) - 1
    o, h, lo, c, v = (minutes[col].to_numpy(dtype=np.float64) for col in COLUMNS[1:])
    buckets = k[first]
    ended = allowed_end[buckets] <= now_ms
    out = pd.DataFrame(
        {
            "ts": allowed[buckets],
            "open": o[first],
            "high": np.maximum.reduceat(h, first),
            "low": np.minimum.reduceat(lo, first),
            "close": c[last],
            "volume": np.add.reduceat(v, first),
        }
    )[ended].reset_index(drop=True)
    return _split(out, owner[buckets[ended]], len(bounds))


def _split(frame: pd.DataFrame, session_of: np.ndarray, n: int) -> list[pd.DataFrame]:
    """``frame`` (sorted by time) cut into the ``n`` sessions its rows belong to (``session_of``,
    non-decreasing): each session's rows are one run."""
    cuts = np.searchsorted(session_of, np.arange(n + 1))
    return [frame.iloc[cuts[i] : cuts[i + 1]].reset_index(drop=True) for i in range(n)]


def source_rows(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, source: Interval, bounds: Sequence[SessionBounds]
) -> tuple[pd.DataFrame, np.ndarray]:
    """One read of ``source`` bars over the sessions: the bars inside a session (sorted by time;
    those outside every session, which the source's own checks report, are left out) and the
    position in ``bounds`` of each one's session."""
    lo = calendar.partition_window_ms(bounds[0].session, source)[0]
    hi = calendar.partition_window_ms(bounds[-1].session, source)[1]
    df = warehouse.read_bars(symbol, source, lo, hi)
    where = session_index(df["ts"].to_numpy(dtype=np.int64), bounds, source)
    keep = where >= 0
    return df[keep].reset_index(drop=True), where[keep]


def week_rows(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, bounds: Sequence[SessionBounds]
) -> tuple[pd.DataFrame, np.ndarray]:
    """One read of the daily bars of the weeks the sessions end (``source_rows`` for weekly bars):
    the daily bars of each such week, and the position in ``bounds`` of the session owning it."""
    owners = np.array([i for i, b in enumerate(bounds) if b.week_open_ms is not None], dtype=np.int64)
    if not len(owners):
        return empty_frame(), np.zeros(0, dtype=np.int64)
    lo = calendar.partition_window_ms(bounds[int(owners[0])].session, "1w")[0]
    hi = calendar.partition_window_ms(bounds[int(owners[-1])].session)[1]
    df = warehouse.read_bars(symbol, "1d", lo, hi)
    ts = df["ts"].to_numpy(dtype=np.int64)
    starts = np.array([bounds[i].week_open_ms for i in owners], dtype=np.int64)
    ends = np.array([bounds[i].close_ms for i in owners], dtype=np.int64)
    week = np.searchsorted(starts, ts, side="right") - 1
    keep = (week >= 0) & (ts < ends[np.clip(week, 0, None)])
    return df[keep].reset_index(drop=True), owners[week[keep]]


def _source_of(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, interval: Interval, bounds: Sequence[SessionBounds]
) -> tuple[pd.DataFrame, np.ndarray]:
    if interval == "1w":
        return week_rows(warehouse, calendar, symbol, bounds)
    return source_rows(warehouse, calendar, symbol, DERIVED_FROM[interval], bounds)


def read_source(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, source: Interval, bounds: Sequence[SessionBounds]
) -> dict[date, pd.DataFrame]:
    """``source_rows`` split per session."""
    kept, where = source_rows(warehouse, calendar, symbol, source, bounds)
    return {b.session: frame for b, frame in zip(bounds, _split(kept, where, len(bounds)), strict=True)}


def derive_sessions(
    *,
    symbol: str,
    interval: Interval,
    calendar: TradingCalendar,
    sessions: Sequence[date],
    warehouse: Warehouse,
    run_id: str,
    now: datetime | None = None,
    window_first: date | None = None,
) -> list[PartitionResult]:
    """Resample the sessions from their stored source bars and write them (idempotently, with
    checksums and lineage, as ingested partitions are). Raises before writing anything when a
    session has not opened or its source partition was never written; for a weekly bar, every
    session of its week (from ``window_first``, the first session the source's window holds)."""
    source = DERIVED_FROM[interval]
    now = now or datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    days = sorted(set(sessions))
    needed = days
    if interval == "1w":
        weeks = [calendar.week_sessions(d) for d in days if calendar.bounds(d).week_open_ms is not None]
        needed = sorted({*days, *(s for w in weeks for s in w if window_first is None or s >= window_first)})
    require_source(warehouse, calendar, symbol, source, needed, now_ms, f"{symbol} {interval}")
    require_verified(warehouse, symbol, source, calendar.session_keys(needed), f"{symbol} {interval}")
    built_from = recorded_source_checksums(warehouse, calendar, symbol, interval, days)
    bounds = [calendar.bounds(d) for d in days]
    minutes, where = _source_of(warehouse, calendar, symbol, interval, bounds)
    fetched = np.bincount(where, minlength=len(bounds))
    candles = resample_sessions(minutes, bounds, interval, now_ms)
    fetched_at = now.astimezone(UTC).isoformat()
    writes, results = [], []
    for b, bars, n_source in zip(bounds, candles, fetched, strict=True):
        want = expected_as_of(b, interval, now_ms)
        checksum = bars_checksum(bars)
        w0, w1 = calendar.partition_window_ms(b.session, interval)
        vendor = derived_vendor(source)
        writes.append(
            PartitionWrite(symbol, interval, b.session, w0, w1, bars, vendor, want, checksum, built_from[b.session])
        )
        results.append(
            PartitionResult(
                session=b.session,
                rows=len(bars),
                expected_rows=want,
                first_bar=ts_iso(int(bars["ts"].iloc[0])) if len(bars) else None,
                last_bar=ts_iso(int(bars["ts"].iloc[-1])) if len(bars) else None,
                checksum=checksum,
                vendor=derived_vendor(source),
                fetched_at=fetched_at,
                session_closed=b.close_ms <= now_ms,
                quarantined=0,
                gap=len(bars) < want,
                fetched_rows=int(n_source),
            )
        )
    warehouse.write_partitions(writes, run_id)
    return results


def matches_source(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: Interval,
    sessions: Sequence[date],
    now: datetime | None = None,
) -> dict[str, CheckOutcome]:
    """Per session (ISO date): do the stored ``interval`` bars equal, exactly, the candles the
    stored source bars give now, and is the source still what they were built from (neither
    rewritten nor damaged since)? Either failing fails until the session is re-derived."""
    if not sessions:
        return {}
    source = DERIVED_FROM[interval]
    now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
    days = sorted(set(sessions))
    bounds = [calendar.bounds(s) for s in days]
    wants = resample_sessions(_source_of(warehouse, calendar, symbol, interval, bounds)[0], bounds, interval, now_ms)
    stored = read_source(warehouse, calendar, symbol, interval, bounds)
    lineage = warehouse.latest_lineage_many(symbol, interval, [d.isoformat() for d in days])
    recorded = recorded_source_checksums(warehouse, calendar, symbol, interval, days)
    hashed = stored_source_checksums(warehouse, calendar, symbol, interval, days)
    out = {}
    for b, want in zip(bounds, wants, strict=True):
        outcome = _compare(want, stored[b.session], source)
        row = lineage.get(b.session.isoformat())
        changed = source_change(row.source_checksum if row else None, recorded[b.session], hashed[b.session])
        if outcome.passed and changed:
            outcome = CheckOutcome(MATCHES_SOURCE, False, f"{changed}: re-derive the session", outcome.metadata)
        out[b.session.isoformat()] = outcome
    return out


def _compare(want: pd.DataFrame, have: pd.DataFrame, source: Interval) -> CheckOutcome:
    meta: dict[str, Any] = {"bars": len(have), "source_bars_give": len(want), "missing": 0, "extra": 0, "different": 0}
    in_place = len(want) == len(have) and all(np.array_equal(want[c].to_numpy(), have[c].to_numpy()) for c in COLUMNS)
    if not in_place:  # the usual case needs no join; otherwise join on ts to count and show what differs
        merged = want.merge(have, on="ts", how="outer", suffixes=("_src", ""), indicator=True)
        only_source = (merged["_merge"] == "left_only").to_numpy()
        only_stored = (merged["_merge"] == "right_only").to_numpy()
        both = (merged["_merge"] == "both").to_numpy()
        differ = np.zeros(len(merged), dtype=bool)
        for c in COLUMNS[1:]:
            differ |= both & (merged[f"{c}_src"].to_numpy() != merged[c].to_numpy())
        bad = only_source | only_stored | differ
        meta.update(missing=int(only_source.sum()), extra=int(only_stored.sum()), different=int(differ.sum()))
        if bad.any():
            examples = [ts_iso(int(t)) for t in merged["ts"].to_numpy()[bad][:3]]
            meta["examples"] = examples
            return CheckOutcome(
                MATCHES_SOURCE,
                False,
                f"{int(bad.sum())} bar(s) differ from the candles of the stored {source} bars ({meta['missing']} "
                f"missing, {meta['extra']} extra, {meta['different']} different; e.g. {', '.join(examples)}): "
                "re-derive the session",
                meta,
            )
    return CheckOutcome(MATCHES_SOURCE, True, f"{len(have)} bars equal the candles of the stored {source}", meta)
