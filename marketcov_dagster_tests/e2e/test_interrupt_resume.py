"""A backfill killed mid-way (SIGKILL, not a clean stop) and then rerun leaves exactly the data an
uninterrupted run leaves: no duplicate rows, every partition's checksum equal. Also: the shared
rate limit holds across processes calling one vendor."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.vendors.alpaca import AlpacaVendor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, marketcov
from marketcov_dagster_tests.fakes.vendor_servers import FakeAlpaca, FakeBinance, Fault, regular_bars
from marketcov_dagster_tests.vendors.conftest import FAST, settings

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

# a recent week, derived from today: inside the minute window whatever the date the suite runs on
LAST = datetime.now(UTC).date() - timedelta(days=10)
FIRST = LAST - timedelta(days=7)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def crypto_home(home: Path) -> None:
    cfg = {
        "intervals": {"1m": {"window_days": 730}},
        "asset_classes": {
            "crypto": {"calendar": "24/7", "vendors": ["binance"], "intervals": ["1m"], "symbols": SYMBOLS}
        },
        "vendors": {"binance": FAST},
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))


def backfill_args() -> list[str]:
    return ["backfill", "--start", FIRST.isoformat(), "--end", LAST.isoformat()]


def test_killed_backfill_resumes_without_duplicates(home: Path) -> None:
    crypto_home(home)
    with FakeBinance() as server:
        env = {**base_env(home, None), "MARKETCOV_BINANCE_BASE_URL": server.url}
        server.script = [Fault(delay=0.25)] * 10_000  # slow vendor: every page takes a while
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketcov_dagster.cli", *backfill_args()],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wh_path = home / "marketcov_warehouse.sqlite"
        deadline = time.time() + 120
        # kill once the first symbol is written and the second is being fetched
        while time.time() < deadline and proc.poll() is None:
            if wh_path.exists() and Warehouse(f"sqlite:///{wh_path}").count_bars() > 0:
                break
            time.sleep(0.1)
        while len(server.requests) < 14 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the backfill ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wh = Warehouse(f"sqlite:///{wh_path}")
        written = wh.count_bars()
        assert 0 < written < len(SYMBOLS) * 8 * 1440, "the kill did not land mid-way"

        server.script = []
        out = marketcov(backfill_args(), env)
        assert out.returncode == 0, out.stderr[-3000:]

    sessions = get_calendar("24/7").sessions(FIRST, LAST)
    assert wh.count_bars() == len(SYMBOLS) * len(sessions) * 1440
    for symbol in SYMBOLS:
        stored = wh.read_bars(symbol, "1m", 0, 2**62)
        assert not stored["ts"].duplicated().any()
        latest = wh.latest_lineage_many(symbol, "1m", [d.isoformat() for d in sessions])
        for d in sessions:
            assert latest[d.isoformat()].checksum == bars_checksum(regular_bars(symbol, "1m", d, d))


def _hammer(url: str, wh_url: str, n: int) -> None:
    """One process calling Alpaca ``n`` times at 120 requests/minute, sharing the warehouse's bucket."""
    vendor = AlpacaVendor(
        base_url=url,
        settings=settings("alpaca", requests_per_minute=120, burst=1),
        calendar=get_calendar("24/7"),
        ledger=Warehouse(wh_url),
    )
    for _ in range(n):
        vendor.fetch_bars("BTCUSDT", "1m", datetime(2024, 12, 2, tzinfo=UTC), datetime(2024, 12, 2, 1, tzinfo=UTC))


def test_the_rate_limit_holds_across_processes(tmp_path: Path) -> None:
    wh_url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    Warehouse(wh_url)
    ctx = multiprocessing.get_context("spawn")
    with FakeAlpaca() as server:
        procs = [ctx.Process(target=_hammer, args=(server.url, wh_url, 3)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
            assert p.exitcode == 0
        times = sorted(r.at for r in server.requests)
    assert len(times) == 6
    # 120/minute is one request every 0.5 s whichever process sends it: six requests span at
    # least 2.5 s. A limiter per process would let each send its three in 1 s, together in ~1 s.
    # (Times are taken where the server handles the request, so allow for scheduling noise.)
    assert times[-1] - times[0] >= 2.0, [round(b - a, 3) for a, b in itertools.pairwise(times)]
