"""The gap-healing sensor restores coverage through Dagster runs, bounded per tick."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.healing import HEAL_SENSOR, HEAL_TAG
from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.healing import plan_healing
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster_tests.conftest import small_universe

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

NOW = datetime(2025, 2, 7, 22, 0, tzinfo=UTC)  # the 10-day window holds 2025-01-28 .. 2025-02-07
AAPL = dg.AssetKey(["ohlcv", "1d", "AAPL"])
MSFT = dg.AssetKey(["ohlcv", "1d", "MSFT"])


def test_healing_requests_newest_holes_first_bounded_per_tick(tmp_path: Path) -> None:
    universe = small_universe(
        intervals={"1d": {"window_days": 10}},
        asset_classes={
            "us": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d"], "symbols": ["AAPL", "MSFT"]}
        },
        healing={"max_runs_per_tick": 3},
    )
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(universe, now=NOW, warehouse=WarehouseResource(url=url), clock=lambda: NOW)
    job = defs.resolve_job_def("ohlcv_xnys_1d_job")
    sensor = defs.get_repository_def().get_sensor_def(HEAL_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # off until someone starts it
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        for key, start, end in (
            (AAPL, "2025-01-28", "2025-02-04"),
            (AAPL, "2025-02-06", "2025-02-07"),
            (MSFT, "2025-01-28", "2025-02-03"),
        ):
            tags = {RANGE_START_TAG: start, RANGE_END_TAG: end}
            assert job.execute_in_process(instance=instance, asset_selection=[key], tags=tags).success

        def tick() -> list[dg.RunRequest]:
            ctx = dg.build_sensor_context(instance=instance, definitions=defs)
            return list(sensor.evaluate_tick(ctx).run_requests or [])

        first = tick()
        assert [(r.partition_key, sorted(k.path[-1] for k in r.asset_selection or [])) for r in first] == [
            ("2025-02-07", ["MSFT"]),
            ("2025-02-06", ["MSFT"]),
            ("2025-02-05", ["AAPL", "MSFT"]),
        ]
        assert all(r.job_name == "ohlcv_xnys_1d_job" and r.tags[HEAL_TAG].startswith("XNYS|1d|") for r in first)
        for r in first:  # what the daemon would launch
            assert job.execute_in_process(
                instance=instance, partition_key=r.partition_key, asset_selection=r.asset_selection, tags=r.tags
            ).success
        second = tick()
        assert [(r.partition_key, [k.path[-1] for k in r.asset_selection or []]) for r in second] == [
            ("2025-02-04", ["MSFT"])
        ]
        job.execute_in_process(instance=instance, partition_key="2025-02-04", asset_selection=[MSFT])
        assert tick() == []
        assert all(c.coverage_pct == 100.0 for c in coverage_for(instance, universe.specs, NOW))


def test_plan_skips_sessions_already_being_healed() -> None:
    spec = AssetSpecification("AAPL", "1d", "us", "XNYS", ("synthetic",), 10, 1.0)
    cov = AssetCoverage(
        spec.key_str, "AAPL", "1d", "XNYS", 9, 6, 66.7, None, None, 0, [], ["2025-02-03"], ["2025-02-04", "2025-02-05"]
    )
    runs = plan_healing([(spec, cov)], max_runs=5, in_flight={("XNYS", "1d", "2025-02-05")})
    assert [r.session for r in runs] == ["2025-02-04", "2025-02-03"]
    assert plan_healing([(spec, cov)], max_runs=0) == []
