"""Retention: bars older than an asset's window are deleted, and the lineage says so.

The window's first session is the same one the partitions definition starts at, so what expires
is exactly what Dagster no longer lists as a partition; coverage counts such sessions as expired,
never as missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from marketcov_dagster.lib.bars import empty_frame
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster.lib.windows import window_start


@dataclass(frozen=True)
class Expiry:
    asset_key: str
    first_kept: str
    sessions: list[str]
    bars_deleted: int


def expire(warehouse: Warehouse, spec: AssetSpecification, now: datetime, run_id: str) -> Expiry:
    """Delete ``spec``'s bars before its window; idempotent."""
    cal = get_calendar(spec.calendar)
    first_kept = window_start(cal, spec.window_days, now)
    cutoff_ms = (
        cal.partition_window_ms(first_kept)[0] if cal.is_session(first_kept) else cal.day_window_ms(first_kept)[0]
    )
    sessions, deleted = warehouse.expire_before(
        spec.symbol, spec.interval, first_kept.isoformat(), cutoff_ms, run_id, bars_checksum(empty_frame())
    )
    return Expiry(spec.key_str, first_kept.isoformat(), sessions, deleted)
