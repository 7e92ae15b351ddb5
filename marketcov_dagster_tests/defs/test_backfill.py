"""Backfills split across worker processes: the split itself, and a real parallel run on one
Dagster instance and one SQLite warehouse that must equal the same backfill run in one process,
on a SQLite instance and on a PostgreSQL instance (held connections, batched events)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from marketcov_dagster.defs.backfill import (
    EVENT_BATCH_ENV,
    PARTITIONS_PER_WORKER,
    GroupPlan,
    auto_workers,
    instance_hint,
    partitions_of,
    plan_backfill,
    run_backfill,
    shard_plans,
)
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.universe import Universe, load_universe
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.conftest import PG_ADMIN_URL, small_universe

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 12, 6, 22, 0, tzinfo=UTC)


def _default_plans() -> list[GroupPlan]:
    universe = load_universe(ROOT / "marketcov.yaml")
    return plan_backfill(universe.specs, date(2000, 1, 1), None, NOW)


@pytest.mark.parametrize("workers", [1, 2, 3, 7, 100])
def test_shards_hold_every_asset_once_and_balance_the_partitions(workers: int) -> None:
    plans = _default_plans()
    shards = shard_plans(plans, workers)
    assert 1 <= len(shards) <= workers
    sessions = {p.job_name: p.sessions for p in plans}
    seen = Counter((p.job_name, s.key_path) for shard in shards for p in shard for s in p.specs)
    assert seen == Counter((p.job_name, s.key_path) for p in plans for s in p.specs)
    for shard in shards:
        jobs = [p.job_name for p in shard]
        assert len(jobs) == len(set(jobs)), "one run per group and worker"
        assert all(p.sessions == sessions[p.job_name] and p.specs for p in shard)
    loads = [partitions_of(shard) for shard in shards]
    assert sum(loads) == partitions_of(plans)
    # greedy largest-first: no worker carries more than one asset's history beyond another
    biggest_unit = max(len(p.sessions) for p in plans)
    assert max(loads) - min(loads) <= biggest_unit


def test_shards_refuse_zero_workers() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        shard_plans(_default_plans(), 0)


def test_auto_workers_follow_cores_and_size() -> None:
    plans = _default_plans()
    assert partitions_of(plans) > 4 * PARTITIONS_PER_WORKER
    assert auto_workers(plans, cpus=1) == 1
    assert auto_workers(plans, cpus=2) == 2
    assert auto_workers(plans, cpus=64) == 4
    small = [GroupPlan(p.job_name, p.specs[:1], p.sessions[-3:]) for p in plans]
    assert auto_workers(small, cpus=64) == 1


Backfilled = tuple[list[tuple[str, int, int]], Warehouse, dict[str, int]]
Connections = list[int]


@contextmanager
def _instance(home: Path, postgres_url: str | None) -> Iterator[dg.DagsterInstance]:
    home.mkdir()
    if postgres_url is None:
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            yield instance
        return
    storage = f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n"
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + storage)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _backfill(
    universe: Universe,
    tmp: Path,
    name: str,
    workers: int,
    monkeypatch: pytest.MonkeyPatch,
    instance_url: str | None = None,
    connections: Connections | None = None,
) -> Backfilled:
    url = f"sqlite:///{tmp / f'{name}.sqlite'}"
    monkeypatch.setenv("MARKETCOV_WAREHOUSE_URL", url)  # workers inherit it, as they do from the CLI
    monkeypatch.delenv(EVENT_BATCH_ENV, raising=False)
    plans = plan_backfill(universe.specs, date(2024, 11, 18), date(2024, 12, 3), NOW)
    with _instance(tmp / name, instance_url) as instance:
        before = _sessions_opened(instance_url) if instance_url else 0
        runs = run_backfill(partial(build_definitions, universe, NOW), instance, plans, workers)
        if instance_url and connections is not None:
            connections.append(_sessions_opened(instance_url) - before)
        assert EVENT_BATCH_ENV not in os.environ, "the batch size is set for the backfill only"
        assert all(r.success for r in runs), [r.error for r in runs]
        assert len(instance.get_runs()) == len(runs)
        # batched or not, each partition is materialized exactly once
        keys = [dg.AssetKey(list(s.key_path)) for s in universe.specs]
        stored = sum(len(instance.fetch_materializations(k, limit=10_000).records) for k in keys)
        assert stored == partitions_of(plans)
        covered = {a.asset_key: a.covered_sessions for a in coverage_for(instance, universe.specs, NOW)}
    return [(r.job_name, r.assets, r.sessions) for r in runs], Warehouse(url), covered


def _assert_same_backfill(one: Backfilled, two: Backfilled, assets: int) -> None:
    (runs1, wh1, covered1), (runs2, wh2, covered2) = one, two
    # two workers: each group's assets split between two runs, every asset in exactly one
    assert len(runs2) > len(runs1) == 4
    assert sum(a for _, a, _ in runs2) == sum(a for _, a, _ in runs1) == assets
    assert covered2 == covered1 and all(n > 0 for n in covered1.values())
    assert wh2.count_bars() == wh1.count_bars() > 0
    cols = ["symbol", "interval", "session", "rows", "checksum"]
    lineage1 = wh1.lineage().sort_values(cols[:3])[cols].reset_index(drop=True)
    lineage2 = wh2.lineage().sort_values(cols[:3])[cols].reset_index(drop=True)
    assert lineage2.equals(lineage1)
    assert not lineage1.duplicated(cols[:3]).any()
    wh1.dispose()
    wh2.dispose()


def test_parallel_backfill_equals_the_sequential_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    universe = small_universe()
    one = _backfill(universe, tmp_path, "one", 1, monkeypatch)
    two = _backfill(universe, tmp_path, "two", 2, monkeypatch)
    _assert_same_backfill(one, two, len(universe.specs))


def _scalar(url: str, sql: str, **params: object) -> int:  # on a connection of its own
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        return int(c.execute(sa.text(sql), params).scalar_one())


def _sessions_opened(url: str) -> int:
    """Server connections ever opened to the database at ``url`` (PostgreSQL's own statistics)."""
    database = sa.make_url(url).database
    return _scalar(PG_ADMIN_URL, "SELECT sessions FROM pg_stat_database WHERE datname = :d", d=database)


def test_backfill_on_a_postgres_instance_holds_connections_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_dagster_url: str
) -> None:
    universe = small_universe()
    one = _backfill(universe, tmp_path, "sqlite_one", 1, monkeypatch)
    opened: Connections = []
    two = _backfill(universe, tmp_path, "postgres_two", 2, monkeypatch, postgres_dagster_url, opened)
    _assert_same_backfill(one, two, len(universe.specs))
    events = _scalar(postgres_dagster_url, "SELECT count(*) FROM event_logs")
    # Dagster's default opens a server connection per event (and more); the backfill holds a few
    assert events > 500 and opened[0] * 10 < events, (opened, events)


def test_a_batch_size_already_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[str | None] = []

    def defs() -> dg.Definitions:
        seen.append(os.environ.get(EVENT_BATCH_ENV))
        return dg.Definitions()

    plans = plan_backfill(small_universe().specs, date(2024, 12, 2), date(2024, 12, 3), NOW)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        monkeypatch.setenv(EVENT_BATCH_ENV, "7")
        with pytest.raises(dg.DagsterInvariantViolationError):  # no such job: it only looks
            run_backfill(defs, instance, plans, 1, event_batch_size=300)
        monkeypatch.delenv(EVENT_BATCH_ENV)
        with pytest.raises(dg.DagsterInvariantViolationError):
            run_backfill(defs, instance, plans, 1, event_batch_size=300)
    assert seen == ["7", "300"]
    assert EVENT_BATCH_ENV not in os.environ


def test_definitions_that_cannot_reach_a_worker_are_refused_before_any_run(tmp_path: Path) -> None:
    universe = small_universe()
    plans = plan_backfill(universe.specs, date(2024, 12, 2), date(2024, 12, 3), NOW)
    # a resource instance does not survive pickling (its config schema does not)
    make_defs = partial(build_definitions, universe, NOW, warehouse=WarehouseResource(url="sqlite:///unused.sqlite"))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with pytest.raises(TypeError, match="workers > 1 need definitions that can be sent to a worker process"):
            run_backfill(make_defs, instance, plans, 2)
        assert not instance.get_runs()


def _broken_definitions() -> dg.Definitions:
    raise RuntimeError("the code location does not load")


def test_a_worker_that_fails_reports_every_run_it_owned(tmp_path: Path) -> None:
    plans = plan_backfill(small_universe().specs, date(2024, 12, 2), date(2024, 12, 3), NOW)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        runs = run_backfill(_broken_definitions, instance, plans, 2)
        assert not instance.get_runs()
    owned = [(p.job_name, len(p.specs)) for shard in shard_plans(plans, 2) for p in shard]
    assert sorted((r.job_name, r.assets) for r in runs) == sorted(owned)
    assert all(not r.success and r.run_id == "" for r in runs)
    assert all(r.error == "worker failed: RuntimeError: the code location does not load" for r in runs)


def test_a_large_backfill_on_dagsters_default_sqlite_storage_suggests_ours_or_postgres(
    tmp_path: Path, postgres_dagster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = _default_plans()
    small = [GroupPlan(p.job_name, p.specs[:1], p.sessions[-3:]) for p in plans]
    with _instance(tmp_path / "sqlite", None) as instance:
        hint = instance_hint(instance, plans)
        assert hint and "SQLite" in hint and f"{partitions_of(plans):,} partitions" in hint
        assert "dagster.yaml" in hint
        assert instance_hint(instance, small) is None
    with _instance(tmp_path / "postgres", postgres_dagster_url) as instance:
        assert instance_hint(instance, plans) is None
    ours = tmp_path / "embedded"
    ours.mkdir()
    (ours / "dagster.yaml").write_text((Path(__file__).resolve().parents[2] / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(ours))
    with dg.DagsterInstance.from_config(str(ours)) as instance:  # the embedded default: no hint
        assert instance_hint(instance, plans) is None


def test_a_weekend_range_runs_the_groups_that_trade_and_skips_the_others() -> None:
    from marketcov_dagster.lib.windows import BadRangeError

    specs = small_universe().specs
    plans = plan_backfill(specs, date(2024, 11, 30), date(2024, 12, 1), NOW)  # Saturday, Sunday
    by_job = {p.job_name: p for p in plans}
    crypto = [p for p in plans if "24_7" in p.job_name]
    xnys = [p for p in plans if "xnys" in p.job_name]
    assert crypto and xnys and len(by_job) == len(plans)
    assert all(p.sessions == [date(2024, 11, 30), date(2024, 12, 1)] and not p.skipped for p in crypto)
    assert all(p.sessions == [] and "no XNYS session" in p.skipped for p in xnys)
    assert partitions_of(plans) == 2 * sum(len(p.specs) for p in crypto)
    equities = [s for s in specs if s.calendar == "XNYS"]
    with pytest.raises(BadRangeError, match="no XNYS session"):
        plan_backfill(equities, date(2024, 11, 30), date(2024, 12, 1), NOW)
