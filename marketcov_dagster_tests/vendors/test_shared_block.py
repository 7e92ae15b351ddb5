"""A Retry-After seen by one process holds for every process before its next request: three real
worker processes (spawned, as ``marketcov backfill --workers`` spawns them) page through one
loopback Binance server sharing one warehouse ledger; the server answers one request in the middle
with 429 and Retry-After: 2. No process sends anything until the block expires, except requests
already on their way when the 429 was answered."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime
from pathlib import Path

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.vendors.binance import BinanceVendor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import FakeBinance, Fault
from marketcov_dagster_tests.vendors.conftest import settings

RETRY_AFTER = 2.0
IN_FLIGHT = 0.5  # a request whose slot was taken before the block was published may still arrive


def _worker(base_url: str, warehouse_url: str, first: date, days: int) -> int:
    """One worker process: fetch ``days`` crypto days of minutes (pages of 1,000)."""
    cal = get_calendar("24/7")
    vendor = BinanceVendor(
        base_url=base_url,
        settings=settings("binance", max_wait=10.0, read_timeout=5.0),
        calendar=cal,
        ledger=Warehouse(warehouse_url),
    )
    sessions = cal.sessions(first, date(2024, 12, 31))[:days]
    start = datetime.fromtimestamp(cal.bounds(sessions[0]).open_ms / 1000, UTC)
    end = datetime.fromtimestamp(cal.bounds(sessions[-1]).close_ms / 1000, UTC)
    return len(vendor.fetch_bars("BTCUSDT", "1m", start, end))


def test_a_retry_after_seen_by_one_worker_holds_every_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    Warehouse(url).dispose()  # the shared ledger exists before the workers start
    body = b'{"code": -1003, "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}'
    with FakeBinance() as server:
        server.script = [Fault()] * 8 + [Fault(429, {"Retry-After": str(int(RETRY_AFTER))}, body)]
        ctx = multiprocessing.get_context("spawn")
        firsts = [date(2024, 3, 4), date(2024, 4, 8), date(2024, 5, 6)]
        with ctx.Pool(3) as pool:
            counts = pool.starmap(_worker, [(server.url, url, d, 4) for d in firsts])
        requests = list(server.requests)
    assert counts == [4 * 1440] * 3  # every worker got all its bars, the one rate-limited included
    limited = requests[8]
    assert len(requests) == 3 * 6 + 1  # 5,760 minutes in pages of 1,000 each, plus the one answered 429
    during = [
        round(r.at - limited.at, 3) for r in requests if limited.at + IN_FLIGHT < r.at < limited.at + RETRY_AFTER - 0.05
    ]
    assert during == [], f"requests went out {during} s after the 429 while Retry-After {RETRY_AFTER:.0f}s held"
    after = [r.at for r in requests if r.at > limited.at + IN_FLIGHT]
    assert after and min(after) >= limited.at + RETRY_AFTER - 0.05  # they resumed once it expired
    until, reason = Warehouse(url).vendor_block("binance")
    assert "Retry-After 2s" in reason and abs(until - (limited.at + RETRY_AFTER)) < 1.0
