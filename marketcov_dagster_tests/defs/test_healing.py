"""The gap-healing sensor restores coverage through Dagster runs, bounded per tick."""

from __future__ import annotations

from dataclasses import replace
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
            ctx = dg.build_sensor_context(
                instance=instance, definitions=defs, resources={"warehouse": WarehouseResource(url=url)}
            )
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
    runs = plan_healing([(spec, cov)], max_runs=5, in_flight={("XNYS", "1d", "2025-02-05", "ohlcv")})
    assert [r.session for r in runs] == ["2025-02-04", "2025-02-03"]
    assert plan_healing([(spec, cov)], max_runs=0) == []


def test_indicator_holes_heal_through_their_own_job_after_their_bars() -> None:
    """An indicator asset's hole is healed by the group's indicator job; a session whose bars are
    missing too waits until the bars are healed."""
    bars = AssetSpecification("AAPL", "1d", "us", "XNYS", ("synthetic",), 10, 1.0)
    ind = replace(bars, indicators=True)
    five = AssetSpecification("AAPL", "5m", "us", "XNYS", (), 10, 1.0, derived_from="1m")
    minute = replace(five, interval="1m", derived_from=None, vendors=("synthetic",))

    def cov(s: AssetSpecification, missing: list[str]) -> AssetCoverage:
        return AssetCoverage(
            s.key_str, "AAPL", s.interval, "XNYS", 9, 9 - len(missing), 0.0, None, None, 0, [], missing, []
        )

    runs = plan_healing(
        [
            (bars, cov(bars, ["2025-02-07"])),
            (ind, cov(ind, ["2025-02-05", "2025-02-07"])),
            (minute, cov(minute, ["2025-02-06"])),
            (five, cov(five, ["2025-02-06", "2025-02-04"])),
        ],
        max_runs=10,
    )
    assert [(r.session, r.interval, r.kind, r.asset_keys) for r in runs] == [
        ("2025-02-07", "1d", "ohlcv", ("ohlcv/1d/AAPL",)),  # its indicators wait for these bars
        ("2025-02-06", "1m", "ohlcv", ("ohlcv/1m/AAPL",)),  # its 5m candles follow the minutes
        ("2025-02-05", "1d", "indicators", ("indicators/1d/AAPL",)),
        ("2025-02-04", "5m", "ohlcv", ("ohlcv/5m/AAPL",)),
    ]
    assert [r.session for r in plan_healing([(ind, cov(ind, ["2025-02-05"]))], 5, {runs[2].slot})] == []


def test_a_weekly_session_waits_while_any_day_of_its_week_is_missing() -> None:
    """The week of 2025-01-27 has its Monday's daily bar missing: its weekly bar (held by Friday
    01-31) waits for it, while the next week's weekly bar, whose days are all there, is healed."""
    daily = AssetSpecification("AAPL", "1d", "us", "XNYS", ("synthetic",), 20, 1.0)
    weekly = AssetSpecification("AAPL", "1w", "us", "XNYS", (), 20, 1.0, derived_from="1d")

    def cov(s: AssetSpecification, missing: list[str]) -> AssetCoverage:
        return AssetCoverage(
            s.key_str, "AAPL", s.interval, "XNYS", 15, 15 - len(missing), 0.0, None, None, 0, [], missing, []
        )

    runs = plan_healing(
        [(daily, cov(daily, ["2025-01-27"])), (weekly, cov(weekly, ["2025-01-31", "2025-02-07"]))], max_runs=10
    )
    assert [(r.session, r.interval) for r in runs] == [("2025-02-07", "1w"), ("2025-01-27", "1d")]
    # once Monday is there, the week's bar is healed
    runs = plan_healing([(daily, cov(daily, [])), (weekly, cov(weekly, ["2025-01-31"]))], max_runs=10)
    assert [(r.session, r.interval) for r in runs] == [("2025-01-31", "1w")]


def test_healing_sensor_requests_indicator_runs(tmp_path: Path) -> None:
    universe = small_universe(
        intervals={"1d": {"window_days": 10}},
        asset_classes={"us": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d"], "symbols": ["AAPL"]}},
        indicators={"intervals": ["1d"]},
        healing={"max_runs_per_tick": 3},
    )
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(universe, now=NOW, warehouse=WarehouseResource(url=url), clock=lambda: NOW)
    jobs = {name: defs.resolve_job_def(name) for name in ("ohlcv_xnys_1d_job", "indicators_xnys_1d_job")}
    sensor = defs.get_repository_def().get_sensor_def(HEAL_SENSOR)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        for job, end in (("ohlcv_xnys_1d_job", "2025-02-06"), ("indicators_xnys_1d_job", "2025-02-04")):
            tags = {RANGE_START_TAG: "2025-01-28", RANGE_END_TAG: end}
            assert jobs[job].execute_in_process(instance=instance, tags=tags).success

        def tick() -> list[dg.RunRequest]:
            ctx = dg.build_sensor_context(
                instance=instance, definitions=defs, resources={"warehouse": WarehouseResource(url=url)}
            )
            requests = list(sensor.evaluate_tick(ctx).run_requests or [])
            for r in requests:  # what the daemon would launch
                assert (
                    jobs[r.job_name or ""]
                    .execute_in_process(
                        instance=instance, partition_key=r.partition_key, asset_selection=r.asset_selection, tags=r.tags
                    )
                    .success
                )
            return requests

        first = tick()
        assert [(r.job_name, r.partition_key, r.tags[HEAL_TAG]) for r in first] == [
            ("ohlcv_xnys_1d_job", "2025-02-07", "XNYS|1d|2025-02-07"),
            ("indicators_xnys_1d_job", "2025-02-06", "XNYS|1d|2025-02-06|indicators"),
            ("indicators_xnys_1d_job", "2025-02-05", "XNYS|1d|2025-02-05|indicators"),
        ]
        assert [(r.job_name, r.partition_key) for r in tick()] == [("indicators_xnys_1d_job", "2025-02-07")]
        assert tick() == []
        assert all(c.coverage_pct == 100.0 for c in coverage_for(instance, universe.all_specs, NOW))
