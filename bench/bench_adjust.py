"""Adjusted reads against their floor, side by side in one run.

- 3 years of daily bars for N symbols (default 500), each with a 4-for-1 split and 12 quarterly
  cash dividends in the ledger, read back-adjusted (``adjust=all``) one symbol at a time;
- 90 days of minute bars of one symbol with a split inside the range.

Ours is what ``marketcov bars --adjust all`` and ``/api/bars?adjust=all`` run
(``lib.prices.ledger.read_adjusted``): read the raw bars, read the symbol's actions from the
ledger, find each dividend's reference close in the warehouse, build the cumulative factors and
multiply, rounding to the published precision. The floor reads the same raw bars with the same
reader and multiplies them by the same factors computed with plain NumPy from actions already in
memory (no ledger read, no reference-close lookup, no rounding): the least any adjusted read can do.

Then ``GET /api/bars/{symbol}/1d?adjust=all`` over 3 years of NVDA (its real split in the
synthetic history and the ledger a backfill loads), sequentially, against ``marketcov serve``.

    .venv/bin/python -m bench.bench_adjust              # 500 symbols, 3 years; 90 days of 1m; the API
    .venv/bin/python -m bench.bench_adjust --smoke      # 5 symbols
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

from bench.bench_api import start
from bench.common import clean_env, percentile, report, timed
from marketcov_dagster.lib.calendars import TradingCalendar, get_calendar
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.prices.adjust import PRICE_COLUMNS
from marketcov_dagster.lib.prices.ledger import read_adjusted
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse

END = date(2026, 10, 30)  # a fixed, closed range: the figures do not move with the calendar
XNYS = get_calendar("XNYS")


def _actions(symbol: str, sessions: list[date]) -> list[CorporateAction]:
    """A 4-for-1 split in the middle of the range and a dividend every 63 sessions."""
    split = CorporateAction(symbol, "split", sessions[len(sessions) // 2], "bench", f"{symbol}-s", 1.0, 4.0)
    dividends = [
        CorporateAction(symbol, "dividend", d, "bench", f"{symbol}-d{i}", cash=0.25, currency="USD")
        for i, d in enumerate(sessions[30::63])
    ]
    return [split, *dividends]


def _load(wh: Warehouse, symbols: list[str], interval: Interval, days: int) -> dict[str, list[CorporateAction]]:
    sessions = XNYS.sessions(END - timedelta(days=days), END)
    vendor = SyntheticVendor(lambda _s: XNYS)
    ledger = {}
    for symbol in symbols:
        kw = {"symbol": symbol, "interval": interval, "calendar": XNYS, "warehouse": wh}
        ingest_sessions(**kw, sessions=sessions, vendors=[vendor], run_id="b")  # type: ignore[arg-type]
        ledger[symbol] = _actions(symbol, sessions)
        wh.record_actions("bench", [symbol], sessions[0], sessions[-1], ledger[symbol])
    return ledger


def _span(days: int) -> tuple[int, int]:
    sessions = XNYS.sessions(END - timedelta(days=days), END)
    return XNYS.bounds(sessions[0]).open_ms, XNYS.bounds(sessions[-1]).close_ms


def ours(wh: Warehouse, cal: TradingCalendar, symbols: list[str], interval: Interval, days: int) -> int:
    lo, hi = _span(days)
    return sum(len(read_adjusted(wh, cal, s, interval, lo, hi, "all").bars) for s in symbols)


def floor(wh: Warehouse, ledger: dict[str, list[CorporateAction]], interval: Interval, days: int) -> int:
    """Read the same raw bars, then the same multiplications in plain NumPy."""
    lo, hi = _span(days)
    n = 0
    for symbol, actions in ledger.items():
        raw = wh.read_bars(symbol, interval, lo, hi)
        ts = raw["ts"].to_numpy()
        close = raw["close"].to_numpy(dtype=np.float64)
        price = np.ones(len(ts))
        volume = np.ones(len(ts))
        for a in actions:
            ex = XNYS.bounds(a.ex_date).open_ms
            before = ts < ex
            if a.kind == "split":
                price[before] /= a.split_ratio
                volume[before] *= a.split_ratio
            else:
                at = int(np.searchsorted(ts, ex)) - 1
                if at >= 0:
                    price[before] *= 1.0 - (a.cash or 0.0) / close[at]
        out = {c: raw[c].to_numpy(dtype=np.float64) * price for c in PRICE_COLUMNS}
        out["volume"] = raw["volume"].to_numpy(dtype=np.float64) * volume
        n += len(out["close"])
    return n


def _best(rounds: int, fn: object) -> tuple[float, int]:
    results = [timed(fn) for _ in range(rounds)]  # type: ignore[arg-type]
    return min(t for t, _ in results), results[0][1]


def compare(tmp: Path, symbols: int, rounds: int) -> list[list[object]]:
    rows: list[list[object]] = []
    cases: list[tuple[str, Interval, int, list[str]]] = [
        (f"{symbols} symbols x 3 years of 1d", "1d", 3 * 365, [f"S{i:03d}" for i in range(symbols)]),
        ("1 symbol x 90 days of 1m", "1m", 90, ["M000"]),
    ]
    for name, interval, days, names in cases:
        wh = Warehouse(f"sqlite:///{tmp / f'{interval}.sqlite'}")
        load_s, ledger = timed(lambda: _load(wh, names, interval, days))  # noqa: B023
        best_ours = best_floor = float("inf")
        bars = 0
        for _ in range(rounds):  # alternating rounds, the best of each: a shared machine's noise cancels
            t, bars = timed(lambda: ours(wh, XNYS, names, interval, days))  # noqa: B023
            best_ours = min(best_ours, t)
            t, floor_bars = timed(lambda: floor(wh, ledger, interval, days))  # noqa: B023
            best_floor = min(best_floor, t)
            assert floor_bars == bars
        ratio = best_floor / best_ours
        rows.append([name, f"{bars:,}", f"{best_ours:.3f}", f"{best_floor:.3f}", f"{ratio:.2f}x", ">= 0.5x"])
        print(f"  loaded {name} in {load_s:.0f} s", file=sys.stderr)
        wh.dispose()
    return rows


def api_p95(tmp: Path, requests: int, days: int = 3 * 365) -> list[list[object]]:
    """p50/p95 of the adjusted read of ``days`` and, beside it, of the same range raw (alternating)."""
    home = tmp / "home"
    home.mkdir()
    config = home / "marketcov.yaml"
    intervals = {"1d": {"window_days": days}}
    classes = {"us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d"], "symbols": ["NVDA"]}}
    config.write_text(yaml.safe_dump({"intervals": intervals, "asset_classes": classes}))
    env = clean_env(home, config)
    cli = [sys.executable, "-m", "marketcov_dagster.cli"]
    full = ["backfill", "--symbols", "NVDA", "--missing"]  # with --missing: from the window's first session
    subprocess.run([*cli, *full], env=env, cwd=home, check=True, capture_output=True)
    proc, base, _ = start(env, home)
    start_day = (datetime.now(UTC).date() - timedelta(days=days - 7)).isoformat()
    urls = {
        "GET /api/bars/NVDA/1d?adjust=all": f"{base}/api/bars/NVDA/1d?adjust=all&start={start_day}",
        "GET /api/bars/NVDA/1d (raw, beside it)": f"{base}/api/bars/NVDA/1d?start={start_day}",
    }
    samples: dict[str, list[float]] = {name: [] for name in urls}
    bars: dict[str, int] = {}
    try:
        for name, url in urls.items():  # warm
            bars[name] = urllib.request.urlopen(url, timeout=30).read().count(b'"ts"')
        for _ in range(requests):
            for name, url in urls.items():
                t0 = time.perf_counter()
                urllib.request.urlopen(url, timeout=30).read()
                samples[name].append((time.perf_counter() - t0) * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    targets = ["p95 <= 50 ms", "-"]
    return [
        [name, f"{bars[name]:,}", f"{percentile(ms, 50):.1f}", f"{percentile(ms, 95):.1f}", target]
        for (name, ms), target in zip(samples.items(), targets, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, default=500)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--smoke", action="store_true", help="5 symbols, 2 rounds; the API over 60 days, 20 requests")
    args = p.parse_args(argv)
    api_days = 3 * 365
    if args.smoke:
        args.symbols, args.rounds, args.requests, api_days = 5, 2, 20, 60
    with tempfile.TemporaryDirectory() as d:
        rows = compare(Path(d), args.symbols, args.rounds)
        report(
            "Adjusted reads against the NumPy floor",
            ["read", "bars", "ours (s)", "floor (s)", "ours vs floor", "target"],
            rows,
            "python -m bench.bench_adjust" + (" --smoke" if args.smoke else ""),
        )
        api = api_p95(Path(d), args.requests, api_days)
        report(
            f"The API, sequential, {args.requests} requests",
            ["request", "bars", "p50 (ms)", "p95 (ms)", "target"],
            api,
            "python -m bench.bench_adjust" + (" --smoke" if args.smoke else ""),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
