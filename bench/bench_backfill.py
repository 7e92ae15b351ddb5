"""Backfill through Dagster versus Dagster's own floor, side by side in one run.

Ours: ``marketcov backfill`` of the whole history (3 years of 1d, 90 days of 1m for the default
universe): one single-run range run per (calendar, interval) group and worker process, the
workers and event settings as ``marketcov backfill`` chooses them, on a fresh instance (SQLite,
or ``--instance postgres``) and a fresh SQLite warehouse. Floor:
the same runs of assets that do no work at all but emit exactly the same events: per partition
one materialization with the same metadata keys, and its checks' per-partition evaluations (three,
or four where ours runs four) plus their summaries. ``--derived`` takes the whole default universe
(the candles and weekly bars too, after their sources), as ``marketcov backfill --start
2000-01-01`` does. Also: what one run per partition would cost, measured on a sample and
extrapolated. ``--levers`` instead compares, on ours, each lever Dagster offers against a
sequential run with Dagster's defaults: event batching, planned events as one subset, worker
processes, the instance on PostgreSQL, held connections.

    .venv/bin/python -m bench.bench_backfill --sequential            # the full default history
    .venv/bin/python -m bench.bench_backfill --sequential --instance postgres
    .venv/bin/python -m bench.bench_backfill --instance held --derived  # the embedded default, everything
    .venv/bin/python -m bench.bench_backfill --levers --symbols AAPL,MSFT,NVDA,BTCUSDT --sessions 150
    .venv/bin/python -m bench.bench_backfill --symbols AAPL,BTCUSDT --sessions 20
    .venv/bin/python -m bench.bench_backfill --smoke
    .venv/bin/python -m bench.bench_backfill --keep /tmp/mc-bench   # then: bench_coverage --home /tmp/mc-bench/ours

No ``from __future__ import annotations`` here: Dagster inspects the asset annotations.
"""

import argparse
import logging
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import dagster as dg

from bench.bench_ingest import drop_database, postgres_database
from bench.common import report, timed, write_consolidated_instance, write_postgres_instance
from marketcov_dagster.defs.backfill import (
    EVENT_BATCH_SIZE,
    GroupPlan,
    auto_workers,
    partitions_of,
    plan_backfill,
    run_backfill,
)
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import group_job_name, sessions_partitions
from marketcov_dagster.lib.intervals import is_intraday
from marketcov_dagster.lib.universe import AssetSpecification, Universe, load_universe
from marketcov_dagster.lib.verify import CHECK_NAMES, DAILY_MATCHES_MINUTES, MATCHES_SOURCE

ROOT = Path(__file__).resolve().parents[1]
META: dict[str, object] = {
    "rows": 390,
    "expected_rows": 390,
    "first_bar": "2025-01-02T14:30:00+00:00",
    "last_bar": "2025-01-02T20:59:00+00:00",
    "checksum": "0" * 64,
    "vendor": "synthetic",
    "fetched_at": "2025-01-03T00:00:00+00:00",
    "session_closed": True,
    "quarantined": 0,
    "gap": False,
    "kept_existing": False,
    "fetched_rows": 390,
}
CHECK_META: dict[str, dg.MetadataValue] = {"rows": dg.MetadataValue.int(390), "expected": dg.MetadataValue.int(390)}


def _null_asset(
    spec: AssetSpecification, pdef: dg.PartitionsDefinition, names: tuple[str, ...] = CHECK_NAMES
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """Emits the events ours does: with ``names`` its check evaluations (daily assets with minute
    bars have the cross-interval check too)."""
    key = dg.AssetKey(list(spec.key_path))

    @dg.asset(key=key, partitions_def=pdef, backfill_policy=dg.BackfillPolicy.single_run(), pool=spec.pool)
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        for k in context.partition_keys:
            context.add_asset_metadata(META, partition_key=k)
        return dg.MaterializeResult()

    specs = [dg.AssetCheckSpec(name, asset=key, partitions_def=pdef) for name in names]

    @dg.multi_asset_check(specs=specs, name=f"{key.to_python_identifier()}_checks")
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        keys = list(context.partition_keys)
        for k in keys:
            for name in names:
                context.op_execution_context.log_event(
                    dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                        asset_key=key, check_name=name, passed=True, partition=k, description="ok", metadata=CHECK_META
                    )
                )
        for name in names:
            yield dg.AssetCheckResult(asset_key=key, check_name=name, passed=True, metadata={"partitions": len(keys)})

    return _asset, _checks


def _check_names(spec: AssetSpecification, minutes: set[str]) -> tuple[str, ...]:
    """The checks ours runs on each partition of ``spec``."""
    if spec.derived_from is not None:
        return (*CHECK_NAMES, MATCHES_SOURCE)
    if spec.interval == "1d" and spec.symbol in minutes:
        return (*CHECK_NAMES, DAILY_MATCHES_MINUTES)
    return CHECK_NAMES


def null_definitions(universe: Universe, now: datetime) -> dg.Definitions:
    groups: dict[tuple[str, str], list[AssetSpecification]] = defaultdict(list)
    for s in universe.specs:
        groups[s.group].append(s)
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    jobs = []
    for (calendar, interval), specs in groups.items():
        pdef = sessions_partitions(calendar, specs[0].window_days, now)
        minutes = {s.symbol for s in universe.specs if s.interval == "1m"}
        built = [_null_asset(s, pdef, _check_names(s, minutes)) for s in specs]
        assets += [a for a, _ in built]
        checks += [c for _, c in built]
        jobs.append(dg.define_asset_job(group_job_name(calendar, interval), selection=[a for a, _ in built]))
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs)


@contextmanager
def _instance(home: Path, kind: str) -> Iterator[dg.DagsterInstance]:
    """A fresh Dagster instance in ``home``: SQLite (the embedded default) or PostgreSQL."""
    home.mkdir(parents=True)
    if kind == "sqlite":
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            yield instance
        return
    if kind in ("consolidated", "held"):
        write_consolidated_instance(home, held=kind == "held")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
        return
    url = postgres_database()
    if url is None:
        raise SystemExit("PostgreSQL is not reachable: the PostgreSQL cases need it")
    write_postgres_instance(home, url)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        drop_database(url)


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Dagster reads these variables as it goes; worker processes inherit them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(
    make_defs: Callable[[], dg.Definitions],
    home: Path,
    plans: list[GroupPlan],
    workers: int = 1,
    kind: str = "sqlite",
    env: dict[str, str] | None = None,
    tuned: bool = True,
    batch: bool | None = None,
) -> float:
    """One backfill on a fresh instance in ``home``; the warehouse is the default one there
    (``DAGSTER_HOME/marketcov_warehouse.sqlite``), as for ``marketcov backfill``. ``tuned``: held
    connections and event batching, as ``marketcov backfill`` runs (``batch`` overrides the latter)."""
    size = EVENT_BATCH_SIZE if (tuned if batch is None else batch) else 0
    with _env({**(env or {}), "DAGSTER_HOME": str(home)}), _instance(home, kind) as instance:
        seconds, runs = timed(
            lambda: run_backfill(make_defs, instance, plans, workers, event_batch_size=size, hold_connections=tuned)
        )
    assert all(r.success for r in runs), [r.error for r in runs if not r.success]
    return seconds


SUBSET_PLANNED = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}


def levers(
    make_defs: Callable[[], dg.Definitions], scratch: Path, plans: list[GroupPlan], workers: int
) -> list[list[str]]:
    """Each lever Dagster offers, on ours, side by side against the sequential SQLite run."""
    workers = max(workers, 2)
    # (label, workers, instance, extra environment, held connections, event batching)
    cases: list[tuple[str, int, str, dict[str, str], bool, bool]] = [
        ("SQLite instance, 1 process, Dagster's defaults (the baseline)", 1, "sqlite", {}, False, False),
        ("SQLite, `DAGSTER_EVENT_BATCH_SIZE=200`", 1, "sqlite", {}, False, True),
        ("SQLite, `DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1`", 1, "sqlite", SUBSET_PLANNED, False, False),
        (f"SQLite instance, {workers} worker processes", workers, "sqlite", {}, False, False),
        ("PostgreSQL instance, 1 process, Dagster's defaults", 1, "postgres", {}, False, False),
        ("PostgreSQL, `DAGSTER_EVENT_BATCH_SIZE=200`", 1, "postgres", {}, False, True),
        ("PostgreSQL, held connections (`optimize_for_webserver`)", 1, "postgres", {}, True, False),
        ("PostgreSQL, held connections + batching (`marketcov backfill`, 1 process)", 1, "postgres", {}, True, True),
        (f"PostgreSQL, held connections + batching, {workers} workers", workers, "postgres", {}, True, True),
    ]
    partitions = partitions_of(plans)
    rows = []
    base = 0.0
    for i, (label, w, kind, env, held, batch) in enumerate(cases):
        seconds = _run(make_defs, scratch / f"lever{i}", plans, w, kind, env, tuned=held, batch=batch)
        base = base or seconds
        rows.append([label, f"{seconds:.1f} s", f"{seconds / partitions * 1000:.0f}", f"{base / seconds:.2f}x"])
        print(rows[-1], file=sys.stderr)
    return rows


SQLITE_STORAGES = [
    ("sqlite", "Dagster's default: one file per run + an index file, a new engine per event"),
    ("consolidated", "`ConsolidatedSqliteEventLogStorage`: one file, a new engine per event"),
    ("held", "the embedded default (`dagster.yaml`): consolidated, one connection pool held per process"),
]


def sqlite_storages(
    make_defs: Callable[[], dg.Definitions], scratch: Path, plans: list[GroupPlan], workers: int
) -> list[list[str]]:
    """The same backfill of ours on each SQLite event log storage, one after the other."""
    partitions = partitions_of(plans)
    rows, base = [], 0.0
    for kind, label in SQLITE_STORAGES:
        seconds = _run(make_defs, scratch / kind, plans, workers, kind)
        base = base or seconds
        rows.append([label, f"{seconds:.1f} s", f"{seconds / partitions * 1000:.0f}", f"{base / seconds:.2f}x"])
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def _latest(plan: GroupPlan, n: int) -> list[date]:
    """The latest ``n`` sessions of ``plan``; daily groups from the Monday of that week, so a
    weekly bar finds every day of its week."""
    if not plan.sessions or is_intraday(plan.specs[0].interval):
        return plan.sessions[-n:]
    first = plan.sessions[-min(n, len(plan.sessions))]
    monday = first - timedelta(days=first.weekday())
    return [d for d in plan.sessions if d >= monday]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", help="comma-separated subset (default: the whole default universe)")
    p.add_argument("--sessions", type=int, help="only the latest N sessions of each window")
    p.add_argument("--workers", type=int, help="worker processes (default: as `marketcov backfill` chooses)")
    p.add_argument("--sequential", action="store_true", help="also run ours in one process, for the speed-up")
    p.add_argument(
        "--instance",
        choices=("sqlite", "consolidated", "held", "postgres"),
        default="sqlite",
        help="the Dagster instance's storage (sqlite: Dagster's default; consolidated: SQLite with one event "
        "log file; held: the same holding one connection pool per process, the project's dagster.yaml)",
    )
    p.add_argument("--levers", action="store_true", help="compare Dagster's levers on ours instead")
    p.add_argument(
        "--sqlite-storages",
        action="store_true",
        help="compare, on ours, the SQLite event log storages (sharded default, consolidated, held) instead",
    )
    p.add_argument("--sample", type=int, default=5, help="single-partition runs timed for the extrapolation")
    p.add_argument("--keep", type=Path, help="work in this (new) folder and keep it; DIR/ours is then a DAGSTER_HOME")
    p.add_argument(
        "--derived",
        action="store_true",
        help="the whole default universe, candles and weekly bars too, as `marketcov backfill --start 2000-01-01`",
    )
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.symbols, args.sessions, args.sample, args.workers = "AAPL,BTCUSDT", 3, 1, 2
    logging.getLogger("dagster").setLevel(logging.WARNING)
    now = datetime.now(UTC)
    universe = load_universe(ROOT / "marketcov.yaml")
    # by default the fetched bars only: ingest through Dagster (bench_derived covers the computation)
    specs = [
        s
        for s in universe.select(symbols=args.symbols.split(",") if args.symbols else None)
        if args.derived or not s.derived_from
    ]
    start = (now - timedelta(days=args.sessions * 2 + 7)).date() if args.sessions else date(1990, 1, 1)
    plans = plan_backfill(specs, start, None, now)
    if args.sessions:
        plans = [GroupPlan(pl.job_name, pl.specs, _latest(pl, args.sessions)) for pl in plans]
    partitions = partitions_of(plans)
    workers = args.workers or auto_workers(plans)
    command = "python -m bench.bench_backfill " + " ".join(argv if argv is not None else sys.argv[1:])
    os.environ.pop("MARKETCOV_WAREHOUSE_URL", None)  # each run's warehouse lies in its DAGSTER_HOME
    os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)  # each case sets its own
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep or scratch)
        ours_defs = partial(build_definitions, universe, now)
        if args.levers:
            rows = levers(ours_defs, Path(tmp), plans, workers)
            report(
                f"Backfill levers ({partitions:,} partitions, ours)",
                ["case", "wall", "ms/partition", "speed vs baseline"],
                rows,
                command,
            )
            return 0
        if args.sqlite_storages:
            rows = sqlite_storages(ours_defs, Path(tmp), plans, workers)
            report(
                f"SQLite event log storages ({partitions:,} partitions, ours, {workers} worker(s))",
                ["storage", "wall", "ms/partition", "speed vs Dagster's default"],
                rows,
                command,
            )
            return 0
        kind = args.instance
        floor = _run(partial(null_definitions, universe, now), Path(tmp) / "floor", plans, workers, kind)
        ours = _run(ours_defs, Path(tmp) / "ours", plans, workers, kind)
        rows = [
            [
                f"{partitions:,} partitions, {workers} worker(s), {kind} instance",
                f"{ours:.1f} s ({ours / partitions * 1000:.0f} ms/partition)",
                f"{floor:.1f} s ({floor / partitions * 1000:.0f} ms/partition)",
                f"{ours / floor:.2f}",
                "<= 1.5",
            ]
        ]
        if args.sequential:
            seq = _run(ours_defs, Path(tmp) / "sequential", plans, 1, kind)
            rows.append(
                [
                    "ours in 1 process",
                    f"{seq:.1f} s ({seq / partitions * 1000:.0f} ms/partition)",
                    "-",
                    f"{seq / ours:.2f}x the {workers} workers",
                    "-",
                ]
            )
        # one run per partition, on a sample of the last fetched group's first asset (a fresh home)
        plan = [pl for pl in plans if pl.sessions and pl.specs[0].derived_from is None][-1]
        one = [GroupPlan(plan.job_name, plan.specs[:1], [d]) for d in plan.sessions[-args.sample :]]
        per_run = _run(ours_defs, Path(tmp) / "per_partition", one, 1, kind) / len(one)
    rows.append(
        [
            "one run per partition (extrapolated)",
            f"{per_run * partitions:.0f} s ({per_run * 1000:.0f} ms/run)",
            "-",
            f"{per_run * partitions / ours:.1f}x ours",
            "-",
        ]
    )
    report(
        "Backfill through Dagster",
        ["case", "ours", "floor (same events, no work)", "ours / floor", "target"],
        rows,
        command,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
