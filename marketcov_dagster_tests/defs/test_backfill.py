"""Backfills split across worker processes: the split itself, and a real parallel run on one
Dagster instance and one SQLite warehouse that must equal the same backfill run in one process."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path

import dagster as dg
import pytest

from marketcov_dagster.defs.backfill import (
    PARTITIONS_PER_WORKER,
    GroupPlan,
    auto_workers,
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
from marketcov_dagster_tests.conftest import small_universe

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


def _backfill(universe: Universe, tmp: Path, name: str, workers: int, monkeypatch: pytest.MonkeyPatch) -> Backfilled:
    url = f"sqlite:///{tmp / f'{name}.sqlite'}"
    monkeypatch.setenv("MARKETCOV_WAREHOUSE_URL", url)  # workers inherit it, as they do from the CLI
    plans = plan_backfill(universe.specs, date(2024, 11, 18), date(2024, 12, 3), NOW)
    (tmp / name).mkdir()
    with dg.instance_for_test(temp_dir=str(tmp / name)) as instance:
        runs = run_backfill(partial(build_definitions, universe, NOW), instance, plans, workers)
        assert all(r.success for r in runs), [r.error for r in runs]
        assert len(instance.get_runs()) == len(runs)
        covered = {a.asset_key: a.covered_sessions for a in coverage_for(instance, universe.specs)}
    return [(r.job_name, r.assets, r.sessions) for r in runs], Warehouse(url), covered


def test_parallel_backfill_equals_the_sequential_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    universe = small_universe()
    runs1, wh1, covered1 = _backfill(universe, tmp_path, "one", 1, monkeypatch)
    runs2, wh2, covered2 = _backfill(universe, tmp_path, "two", 2, monkeypatch)
    # two workers: each group's assets split between two runs, every asset in exactly one
    assert len(runs2) > len(runs1) == 4
    assert sum(a for _, a, _ in runs2) == sum(a for _, a, _ in runs1) == len(universe.specs)
    assert covered2 == covered1 and all(n > 0 for n in covered1.values())
    assert wh2.count_bars() == wh1.count_bars() > 0
    cols = ["symbol", "interval", "session", "rows", "checksum"]
    lineage1 = wh1.lineage().sort_values(cols[:3])[cols].reset_index(drop=True)
    lineage2 = wh2.lineage().sort_values(cols[:3])[cols].reset_index(drop=True)
    assert lineage2.equals(lineage1)
    assert not lineage1.duplicated(cols[:3]).any()
    wh1.dispose()
    wh2.dispose()


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
