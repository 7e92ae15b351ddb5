"""Coverage: our computation (Dagster's materialization history plus the incremental metadata
cache) in a warm process, versus the seeds' approach, a gaps-and-islands SQL query over the bars
table, on the same data, side by side; plus the whole ``marketcov coverage`` process.

Needs an instance that holds a backfill: ``--home`` (a DAGSTER_HOME whose warehouse is the
default SQLite file), e.g. the one ``bench.bench_backfill`` leaves; ``--smoke`` makes a small
one first.

    .venv/bin/python -m bench.bench_coverage --home /tmp/marketcov-bench-home
    .venv/bin/python -m bench.bench_coverage --smoke
    .venv/bin/python -m bench.bench_coverage --scale 130      # 130 symbols x (1d, 1m): ~106k partitions

``--scale N`` is the scale point: N equity symbols, 3 years of 1d and 90 days of 1m each, whose
materialization history is generated as fast as Dagster allows: run-less materializations with
the same per-partition metadata, stored with the event log's batch write (one batch per asset) on
a PostgreSQL instance, the production setup (SQLite's event log writes one event at a time).
About 1 % of the sessions are left out and 1 % written short, so there are holes and partial
sessions to find.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData  # no public builder
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

from bench.bench_ingest import drop_database, postgres_database
from bench.common import clean_env, median, percentile, report, timed, write_postgres_instance
from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import AssetSpecification, Universe, load_universe, parse_universe
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster.lib.windows import expected_sessions

ROOT = Path(__file__).resolve().parents[1]

# the seeds' approach: sessions are the days that hold bars; islands of consecutive days
GAPS_AND_ISLANDS = """
WITH days AS (
  SELECT symbol, interval, ts / 86400000 AS d, COUNT(*) AS n FROM bars GROUP BY symbol, interval, ts / 86400000
), numbered AS (
  SELECT symbol, interval, d, n, d - ROW_NUMBER() OVER (PARTITION BY symbol, interval ORDER BY d) AS grp FROM days
)
SELECT symbol, interval, MIN(d) AS first_day, MAX(d) AS last_day, COUNT(*) AS days, SUM(n) AS bars
FROM numbered GROUP BY symbol, interval, grp ORDER BY symbol, interval, first_day
"""


def sql_baseline(engine: sa.Engine, calls: int) -> list[float]:
    with engine.connect() as c:
        c.exec_driver_sql(GAPS_AND_ISLANDS).all()  # warm the cache
        return [timed(lambda: c.exec_driver_sql(GAPS_AND_ISLANDS).all())[0] for _ in range(calls)]


def copy_bars(sqlite: sa.Engine, pg_url: str) -> sa.Engine:
    """The same bars in a PostgreSQL warehouse (same schema and primary key), loaded with COPY."""
    frame = pd.read_sql_table("bars", sqlite)
    Warehouse(pg_url).dispose()  # creates the schema
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        buf = io.StringIO()
        frame.to_csv(buf, index=False, header=False, float_format="%.17g")
        buf.seek(0)
        with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.copy_expert(f"COPY bars ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", buf)
        conn.exec_driver_sql("ANALYZE bars")
    return engine


def env_for(home: Path) -> dict[str, str]:
    return clean_env(home, ROOT / "marketcov.yaml")


def small_home(tmp: Path) -> Path:
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "marketcov_dagster.cli", "backfill", "--symbols", "AAPL,BTCUSDT"],
        env=env_for(home),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return home


def scale_config(symbols: int) -> dict[str, object]:
    """``symbols`` equity symbols, 3 years of 1d and 90 days of 1m each."""
    names = [f"S{i:04d}" for i in range(symbols)]
    return {
        "intervals": {"1d": {"window_days": 1095}, "1m": {"window_days": 90, "min_completeness": 0.98}},
        "asset_classes": {
            "us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d", "1m"], "symbols": names}
        },
    }


def scale_universe(symbols: int) -> Universe:
    return parse_universe(scale_config(symbols), "scale")


def _materializations(spec: AssetSpecification, now: datetime) -> list[EventLogEntry]:
    """The history a backfill leaves: one materialization per session with the same metadata keys;
    every 97th session missing, every 89th short of bars."""
    calendar = get_calendar(spec.calendar)
    key = dg.AssetKey(list(spec.key_path))
    out = []
    for i, day in enumerate(expected_sessions(calendar, spec.window_days, now)):
        if i % 97 == 96:
            continue
        expected = calendar.bounds(day).expected_bars(spec.interval)
        rows = expected // 2 if i % 89 == 88 else expected
        mat = dg.AssetMaterialization(
            key, partition=day.isoformat(), metadata={"rows": rows, "expected_rows": expected, "vendor": "synthetic"}
        )
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=RUNLESS_JOB_NAME,
            event_specific_data=StepMaterializationData(mat),
        )
        out.append(
            EventLogEntry(  # type: ignore[no-untyped-call]
                user_message="",
                level=logging.INFO,
                job_name=RUNLESS_JOB_NAME,
                run_id=RUNLESS_RUN_ID,
                error_info=None,
                timestamp=time.time(),
                dagster_event=event,
            )
        )
    return out


def scale_point(symbols: int, calls: int, tmp: Path) -> list[list[str]]:
    pg = postgres_database()
    if pg is None:
        raise SystemExit("the scale point needs PostgreSQL for the Dagster instance")
    home = tmp / "scale"
    home.mkdir()
    write_postgres_instance(home, pg)
    os.environ["DAGSTER_HOME"] = str(home)
    specs = scale_universe(symbols).specs
    now = datetime.now(UTC)
    try:
        with dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            stored = 0
            for spec in specs:
                events = _materializations(spec, now)
                instance.event_log_storage.store_event_batch(events)
                stored += len(events)
            generated = time.perf_counter() - t0
            print(f"stored {stored:,} materializations in {generated:.0f} s", file=sys.stderr)
            cold, assets = timed(lambda: coverage_for(instance, specs, now))
            warm = [timed(lambda: coverage_for(instance, specs, now))[0] for _ in range(calls)]
            holes = sum(len(a.missing) for a in assets)
            partial = sum(len(a.partial) for a in assets)
            assert sum(a.covered_sessions for a in assets) == stored - partial
    finally:
        drop_database(pg)
    label = f"{len(specs)} assets, {stored:,} partitions ({holes:,} missing, {partial:,} partial)"
    return [
        [f"scale point, warm: {label}", f"{median(warm) * 1000:.0f} / {percentile(warm, 95) * 1000:.0f} ms", "<= 2 s"],
        ["scale point, first call (reads the whole history into the cache)", f"{cold * 1000:.0f} ms", "-"],
        ["generating that history (batch writes, PostgreSQL instance)", f"{generated:.0f} s", "-"],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", type=Path, help="a DAGSTER_HOME holding a backfill")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--scale", type=int, metavar="SYMBOLS", help="the scale point instead: SYMBOLS x (1d, 1m)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.scale:
        with tempfile.TemporaryDirectory() as tmp:
            rows = scale_point(args.scale, args.calls, Path(tmp))
        report(
            "Coverage at scale",
            ["case", "ours p50 / p95", "target"],
            rows,
            f"python -m bench.bench_coverage --scale {args.scale}",
        )
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            args.home, args.calls = small_home(Path(tmp)), 3
        if args.home is None:
            p.error("--home (or --smoke) is required")
        home: Path = args.home
        os.environ.update(env_for(home))
        specs = load_universe().specs
        with dg.DagsterInstance.get() as instance:
            coverage_for(instance, specs)  # warm: imports, calendars, the metadata cache
            ours = [timed(lambda: coverage_for(instance, specs))[0] for _ in range(args.calls)]
            partitions = sum(len(instance.get_materialized_partitions(dg.AssetKey(list(s.key_path)))) for s in specs)
        sqlite = sa.create_engine(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
        with sqlite.connect() as c:
            bars = c.exec_driver_sql("SELECT COUNT(*) FROM bars").scalar_one()
        sql = {"SQLite": sql_baseline(sqlite, min(args.calls, 5))}
        pg = postgres_database()
        if pg:
            try:
                sql["PostgreSQL"] = sql_baseline(copy_bars(sqlite, pg), min(args.calls, 5))
            finally:
                drop_database(pg)
        t0 = time.perf_counter()
        cli = subprocess.run(
            [str(Path(sys.executable).with_name("marketcov")), "coverage", "--format", "json"],
            env=env_for(home),
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        cli_wall = time.perf_counter() - t0
        assert cli.returncode == 0, cli.stderr[-2000:]
    ours_cell = f"{median(ours) * 1000:.0f} / {percentile(ours, 95) * 1000:.0f} ms"
    rows = [
        [
            f"coverage_for, warm, vs SQL on {db} ({len(specs)} assets, {partitions:,} partitions)",
            ours_cell,
            f"{median(t) * 1000:.0f} ms",
            f"{median(t) / median(ours):.1f}x faster",
            "p95 <= 200 ms, beat SQL",
        ]
        for db, t in sql.items()
    ]
    rows.append(["`marketcov coverage --format json`, whole process", f"{cli_wall * 1000:.0f} ms", "-", "-", "-"])
    report(
        f"Coverage ({bars:,} bars in the warehouse)",
        ["case", "ours p50 / p95", "gaps-and-islands SQL over bars, p50", "ratio", "target"],
        rows,
        "python -m bench.bench_coverage " + ("--smoke" if args.smoke else "--home <DAGSTER_HOME>"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
