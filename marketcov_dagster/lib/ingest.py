"""Fetch -> validate -> checksum -> write for a run of sessions of one (symbol, interval).

Plain Python: the Dagster asset calls ``ingest_sessions`` and turns the returned
``PartitionResult``s into per-partition metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import session_mask, ts_iso, validate_bars
from marketcov_dagster.lib.calendars import SessionBounds, TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval
from marketcov_dagster.lib.vendors.base import Vendor, VendorError
from marketcov_dagster.lib.warehouse import PartitionWrite, Warehouse


class SessionNotStartedError(ValueError):
    """A requested partition is a session that has not opened yet."""


@dataclass(frozen=True)
class PartitionResult:
    session: date
    rows: int
    expected_rows: int
    first_bar: str | None
    last_bar: str | None
    checksum: str
    vendor: str
    fetched_at: str
    session_closed: bool
    invalid_dropped: int

    def metadata(self) -> dict[str, object]:
        """Plain-Python metadata for this partition's materialization."""
        return {
            "rows": self.rows,
            "expected_rows": self.expected_rows,
            "first_bar": self.first_bar or "",
            "last_bar": self.last_bar or "",
            "checksum": self.checksum,
            "vendor": self.vendor,
            "fetched_at": self.fetched_at,
            "session_closed": self.session_closed,
            "invalid_dropped": self.invalid_dropped,
        }


def expected_as_of(bounds: SessionBounds, interval: Interval, now_ms: int) -> int:
    """Bars of the session that have ended by ``now_ms``."""
    if interval == "1d":
        return 1 if bounds.close_ms <= now_ms else 0
    starts = bounds.bar_starts(interval)
    return int(np.count_nonzero(starts + MINUTE_MS <= now_ms))


def ingest_sessions(
    *,
    symbol: str,
    interval: Interval,
    calendar: TradingCalendar,
    sessions: Sequence[date],
    vendors: Sequence[Vendor],
    warehouse: Warehouse,
    run_id: str,
    now: datetime | None = None,
) -> list[PartitionResult]:
    """Fetch ``sessions`` with one range request, validate, checksum and write them atomically.

    Vendors are tried in order; the first that answers without error serves the whole range.
    Bars that fail validation are dropped and logged to the remediation log. Raises
    ``SessionNotStartedError`` before fetching anything if a session has not opened yet.
    """
    now = now or datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    bounds = [calendar.bounds(s) for s in sorted(sessions)]
    future = [b.session.isoformat() for b in bounds if b.open_ms > now_ms]
    if future:
        raise SessionNotStartedError(
            f"{symbol} {interval}: session(s) {future} have not opened yet; nothing was fetched"
        )
    start = datetime.fromtimestamp(bounds[0].open_ms / 1000, UTC)
    end = datetime.fromtimestamp(bounds[-1].close_ms / 1000, UTC)
    errors: list[str] = []
    frame: pd.DataFrame | None = None
    served_by = ""
    for vendor in vendors:
        try:
            frame = vendor.fetch_bars(symbol, interval, start, end)
            served_by = vendor.name
            break
        except VendorError as e:
            errors.append(str(e))
            warehouse.log_remediation(
                [
                    {
                        "symbol": symbol,
                        "interval": interval,
                        "vendor": vendor.name,
                        "kind": "vendor_error",
                        "detail": str(e),
                        "run_id": run_id,
                    }
                ]
            )
    if frame is None:
        raise VendorError("all vendors", f"{symbol} {interval}: every vendor failed: {errors}")
    fetched_at = datetime.now(UTC).isoformat()

    ts = frame["ts"].to_numpy(dtype=np.int64)
    report = validate_bars(frame, bounds, interval)
    remediation = []
    if not report.ok:
        remediation.append(
            {
                "symbol": symbol,
                "interval": interval,
                "vendor": served_by,
                "kind": "invalid_bars",
                "detail": f"dropped {report.invalid_rows} bar(s): {report.summary()}",
                "run_id": run_id,
            }
        )
    valid = frame[~report.invalid_mask]
    vts = valid["ts"].to_numpy(dtype=np.int64)

    writes: list[PartitionWrite] = []
    results: list[PartitionResult] = []
    for b in bounds:
        part = valid[session_mask(vts, [b], interval)].reset_index(drop=True)
        dropped = int(np.count_nonzero(report.invalid_mask & session_mask(ts, [b], interval)))
        expected_now = expected_as_of(b, interval, now_ms)
        if len(part) < expected_now:
            remediation.append(
                {
                    "symbol": symbol,
                    "interval": interval,
                    "session": b.session.isoformat(),
                    "vendor": served_by,
                    "kind": "gap",
                    "detail": f"{len(part)} of {expected_now} expected bars",
                    "run_id": run_id,
                }
            )
        checksum = bars_checksum(part)
        window_start_ms, window_end_ms = calendar.partition_window_ms(b.session)
        writes.append(
            PartitionWrite(
                symbol=symbol,
                interval=interval,
                session=b.session,
                window_start_ms=window_start_ms,
                window_end_ms=window_end_ms,
                bars=part,
                vendor=served_by,
                expected_rows=expected_now,
                checksum=checksum,
            )
        )
        results.append(
            PartitionResult(
                session=b.session,
                rows=len(part),
                expected_rows=expected_now,
                first_bar=ts_iso(int(part["ts"].iloc[0])) if len(part) else None,
                last_bar=ts_iso(int(part["ts"].iloc[-1])) if len(part) else None,
                checksum=checksum,
                vendor=served_by,
                fetched_at=fetched_at,
                session_closed=b.close_ms <= now_ms,
                invalid_dropped=dropped,
            )
        )
    warehouse.write_partitions(writes, run_id, remediation)
    return results
