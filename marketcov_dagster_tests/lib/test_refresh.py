"""The intraday refresh of today's minute partition fetches only the bars after those stored."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
SESSION = date(2025, 2, 3)


def at(text: str) -> datetime:
    return pd.Timestamp(f"2025-02-03 {text}", tz="America/New_York").to_pydatetime()


class RecordingVendor(SyntheticVendor):
    def __init__(self, now: datetime) -> None:
        super().__init__(lambda _s: XNYS, clock=lambda: now)
        self.requests: list[tuple[datetime, datetime]] = []

    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        self.requests.append((start, end))
        return super().fetch_bars(symbol, interval, start, end)


def refresh(wh: Warehouse, now: datetime) -> tuple[int, int, str, RecordingVendor]:
    vendor = RecordingVendor(now)
    (r,) = ingest_sessions(
        symbol="AAPL",
        interval="1m",
        calendar=XNYS,
        sessions=[SESSION],
        vendors=[vendor],
        warehouse=wh,
        run_id=f"refresh-{now:%H%M}",
        min_completeness=0.98,
        now=now,
    )
    return r.rows, r.fetched_rows, r.checksum, vendor


def test_refresh_fetches_only_new_bars_and_equals_a_full_fetch(sqlite_warehouse: Warehouse) -> None:
    rows, fetched, _, first = refresh(sqlite_warehouse, at("10:30"))
    assert (rows, fetched) == (60, 60)
    assert first.requests[0][0] == at("09:30")

    rows, fetched, checksum, second = refresh(sqlite_warehouse, at("11:45"))
    assert (rows, fetched) == (135, 75)
    assert second.requests == [(at("10:30"), at("16:00"))]  # from the first bar not yet stored
    window = XNYS.partition_window_ms(SESSION)
    stored = sqlite_warehouse.read_bars("AAPL", "1m", *window)
    assert len(stored) == 135 and stored["ts"].is_unique and stored["ts"].is_monotonic_increasing
    # the same bars, and the same checksum, as one fetch of the whole morning
    full = SyntheticVendor(lambda _s: XNYS, clock=lambda: at("11:45")).fetch_bars(
        "AAPL", "1m", at("09:30"), at("16:00")
    )
    assert checksum == bars_checksum(full) == bars_checksum(stored)
    assert len(sqlite_warehouse.lineage(symbol="AAPL")) == 2


def test_after_the_close_the_session_is_fetched_whole(sqlite_warehouse: Warehouse) -> None:
    refresh(sqlite_warehouse, at("12:00"))
    rows, fetched, _, final = refresh(sqlite_warehouse, at("16:05"))
    assert (rows, fetched) == (390, 390)  # the final refresh takes the vendor's settled bars
    assert final.requests[0][0] == at("09:30")
