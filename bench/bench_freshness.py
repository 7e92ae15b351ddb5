"""The freshness sensor's tick over N assets, versus reading freshness the run-based way
(Dagster's latest materialization of each asset), side by side in one run.

Ours: one full tick of ``freshness_alerts`` through Dagster's sensor context on a real instance
and SQLite warehouse holding 100 bars per asset: lag from the warehouse (an indexed MAX(ts) per
asset), incidents updated, the outbox flushed (email off). The first tick opens an incident per
stale asset; later ticks are the steady state. Baseline: ``get_latest_materialization_event`` per
asset, the read a run-based freshness check needs (with one materialization recorded per asset).

    .venv/bin/python -m bench.bench_freshness             # 1000 assets (500 symbols x 2 intervals)
    .venv/bin/python -m bench.bench_freshness --smoke
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from bench.common import median, percentile, report, timed
from marketcov_dagster.defs.alerting import FRESHNESS_SENSOR
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.resources import EmailResource, WarehouseResource
from marketcov_dagster.lib.alerts import list_incidents
from marketcov_dagster.lib.universe import parse_universe
from marketcov_dagster.lib.warehouse import Warehouse

NOW = datetime(2025, 2, 4, 17, 0, tzinfo=UTC)  # a Tuesday, mid-session in New York


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, default=500)
    p.add_argument("--ticks", type=int, default=10)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.symbols, args.ticks = 10, 2
    symbols = [f"S{i:04d}" for i in range(args.symbols)]
    universe = parse_universe(
        {
            "intervals": {"1d": {"window_days": 30}, "1m": {"window_days": 5}},
            "asset_classes": {
                "eq": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d", "1m"], "symbols": symbols}
            },
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'wh.sqlite'}"
        wh = Warehouse(url)
        now_ms = int(NOW.timestamp() * 1000)
        rows = []
        for k, s in enumerate(symbols):  # every third asset is stale, the rest fresh
            last = now_ms - (3 * 3600_000 if k % 3 == 0 else 16 * 60_000)
            rows += [(s, "1m", last - i * 60_000) for i in range(100)]
            rows += [(s, "1d", int((NOW - timedelta(days=1 + i)).timestamp() * 1000)) for i in range(5)]
        with wh.begin() as conn:
            conn.exec_driver_sql("INSERT INTO bars VALUES (?, ?, ?, 1, 1, 1, 1, 1)", rows)
        defs = build_definitions(
            universe, now=NOW, warehouse=WarehouseResource(url=url), email=EmailResource(), clock=lambda: NOW
        )
        sensor = defs.get_repository_def().get_sensor_def(FRESHNESS_SENSOR)
        (Path(tmp) / "home").mkdir()
        with dg.instance_for_test(temp_dir=str(Path(tmp) / "home")) as instance:

            def tick() -> None:
                resources = dict(defs.resources or {})
                with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as ctx:
                    sensor.evaluate_tick(ctx)

            first, _ = timed(tick)
            opened = len(list_incidents(wh, open_only=True))
            steady = [timed(tick)[0] for _ in range(args.ticks)]
            keys = [dg.AssetKey(list(s.key_path)) for s in universe.specs]
            for key in keys:
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=None))
            baseline, _ = timed(lambda: [instance.get_latest_materialization_event(k) for k in keys])
        wh.dispose()
    n = len(universe.specs)
    rows_out = [
        [f"{n} assets, first tick (opens {opened} incidents)", f"{first:.2f} s", "-", "-", "<= 1 s"],
        [
            f"{n} assets, steady tick p50 / p95 of {args.ticks}",
            f"{median(steady):.2f} / {percentile(steady, 95):.2f} s",
            f"{baseline:.2f} s",
            f"{baseline / median(steady):.1f}x faster",
            "<= 1 s",
        ],
    ]
    report(
        "Freshness sensor tick",
        ["case", "ours", "baseline: latest materialization per asset", "ratio", "target"],
        rows_out,
        "python -m bench.bench_freshness" + (" --smoke" if args.smoke else ""),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
