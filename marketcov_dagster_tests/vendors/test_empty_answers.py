"""A vendor that answers a whole range with nothing is not a healthy run of empty partitions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.vendors.base import BadSymbolError, VendorError
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import FakeVendorServer, Fault
from marketcov_dagster_tests.vendors.conftest import client
from marketcov_dagster_tests.vendors.test_clients import fetch

XNYS = get_calendar("XNYS")
SESSIONS = XNYS.sessions(date(2024, 3, 11), date(2024, 3, 13))
NOW = datetime(2024, 6, 1, tzinfo=UTC)
EMPTY = json.dumps({"status": "OK", "queryCount": 0, "resultsCount": 0, "adjusted": True}).encode()


def _ingest(wh: Warehouse, vendors: list) -> list:  # type: ignore[type-arg]
    return ingest_sessions(
        symbol="AAPL",
        interval="1m",
        calendar=XNYS,
        sessions=SESSIONS,
        vendors=vendors,
        warehouse=wh,
        run_id="r1",
        now=NOW,
    )


def test_nothing_for_sessions_that_traded_fails_clearly_and_writes_nothing(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    polygon_server.script = [Fault(200, {}, EMPTY)]
    with pytest.raises(VendorError, match=r"no bars at all for 3 session\(s\).*unknown symbol 'AAPL' or no data"):
        _ingest(sqlite_warehouse, [client("polygon", polygon_server, sqlite_warehouse)])
    assert sqlite_warehouse.count_bars() == 0 and sqlite_warehouse.lineage().empty
    (status,) = sqlite_warehouse.vendor_statuses()
    assert status["state"] == "no_data" and status["calls"] == 1 and "unknown symbol" in status["detail"]


def test_nothing_from_the_first_vendor_falls_back_to_the_next(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    polygon_server.script = [Fault(200, {}, EMPTY)]
    results = _ingest(
        sqlite_warehouse, [client("polygon", polygon_server, sqlite_warehouse), SyntheticVendor(lambda _s: XNYS)]
    )
    assert {r.vendor for r in results} == {"synthetic"} and all(r.rows == 390 for r in results)
    kinds = set(sqlite_warehouse.remediation()["kind"])
    assert {"vendor_error", "vendor_fallback"} <= kinds


def test_a_404_for_an_unknown_ticker_is_a_bad_symbol(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    polygon_server.script = [Fault(404, {}, b'{"status": "NOT_FOUND", "request_id": "x", "message": "Not found"}')]
    with pytest.raises(BadSymbolError):
        fetch("polygon", polygon_server, sqlite_warehouse)
