"""Resampled assets in Dagster: checked like any OHLCV asset plus ``matches_source``, shown in the
lineage with their automation, and re-derived by Dagster's automation evaluation when a source
partition is written (the daemon's ``derived_automation`` sensor runs the same evaluation)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.derived import DERIVED_AUTOMATION_SENSOR
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.indicators import INDICATOR_CHECKS
from marketcov_dagster.lib.verify import CHECK_NAMES, MATCHES_SOURCE
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.conftest import small_universe
from marketcov_dagster_tests.defs.test_assets import AAPL_1M, NOW, RANGE, SESSIONS, check_status, run_range

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

AAPL_5M = dg.AssetKey(["ohlcv", "5m", "AAPL"])
INTERVALS = {
    "1d": {"window_days": 1095},
    "1m": {"window_days": 730, "min_completeness": 0.98},
    "5m": {"from": "1m"},
}


def test_resampled_assets_follow_their_source(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(small_universe(intervals=INTERVALS), now=NOW, warehouse=WarehouseResource(url=url))
    graph = defs.resolve_asset_graph()
    node = graph.get(AAPL_5M)
    assert node.parent_keys == {AAPL_1M} and node.automation_condition is not None
    assert node.automation_condition.get_label() == "follow_source"
    assert {k.name for k in graph.asset_check_keys if k.asset_key == AAPL_5M} == {*CHECK_NAMES, MATCHES_SOURCE}
    sensor = next(s for s in defs.sensors or [] if s.name == DERIVED_AUTOMATION_SENSOR)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # on in every instance from the start
    assert not any("5m" in s.name for s in defs.schedules or [])  # no schedule: automation drives them

    wh = Warehouse(url)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW)
        assert tick.total_requested == 0  # the sensor's first tick: no source written yet
        assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], *RANGE).success

        # next tick: every session whose minutes were written is requested, nothing else
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert tick.get_requested_partitions(AAPL_5M) == set(SESSIONS)
        assert tick.get_num_requested(dg.AssetKey(["ohlcv", "5m", "BRK.B"])) == 0

        assert run_range(defs, instance, "ohlcv_xnys_5m_job", [AAPL_5M], *RANGE).success
        for k in SESSIONS:
            for check in (*CHECK_NAMES, MATCHES_SOURCE):
                assert check_status(instance, AAPL_5M, check, k) == "SUCCEEDED", (k, check)
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert tick.total_requested == 0  # derived and up to date: nothing to do

        # a damaged minute: matches_source fails that session only, and says so in the log
        b = get_calendar("XNYS").bounds(date(2024, 11, 27))
        wh.execute(
            "UPDATE bars SET low = low - 1 WHERE symbol='AAPL' AND interval='1m' AND ts = :t",
            {"t": b.open_ms + 33 * 60_000},
        )
        assert run_range(defs, instance, "ohlcv_xnys_5m_verify_job", [], *RANGE).success
        assert check_status(instance, AAPL_5M, MATCHES_SOURCE, "2024-11-27") == "FAILED"
        assert check_status(instance, AAPL_5M, MATCHES_SOURCE, "2024-11-26") == "SUCCEEDED"
        assert wh.remediation(kinds=["source_mismatch"])["session"].tolist() == ["2024-11-27"]

        # the minute partition is written again: automation re-derives exactly that session
        assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], "2024-11-27", "2024-11-27").success
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert tick.get_requested_partitions(AAPL_5M) == {"2024-11-27"}
        assert tick.total_requested == 1
        result = defs.resolve_job_def("ohlcv_xnys_5m_job").execute_in_process(
            instance=instance, asset_selection=[AAPL_5M], partition_key="2024-11-27"
        )
        assert result.success
        assert check_status(instance, AAPL_5M, MATCHES_SOURCE, "2024-11-27") == "SUCCEEDED"
    wh.dispose()


def test_a_derived_run_without_its_source_fails_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(small_universe(intervals=INTERVALS), now=NOW, warehouse=WarehouseResource(url=url))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = defs.resolve_job_def("ohlcv_xnys_5m_job").execute_in_process(
            instance=instance,
            asset_selection=[AAPL_5M],
            tags={RANGE_START_TAG: RANGE[0], RANGE_END_TAG: RANGE[1]},
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "materialize ohlcv/1m/AAPL for them first" in str(failure.step_failure_data)
    assert Warehouse(url).count_bars(interval="5m") == 0


def test_indicator_assets_follow_the_daily_bars(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    universe = small_universe(intervals=INTERVALS, indicators={"intervals": ["1d"]})
    defs = build_definitions(universe, now=NOW, warehouse=WarehouseResource(url=url))
    aapl_1d, ind = dg.AssetKey(["ohlcv", "1d", "AAPL"]), dg.AssetKey(["indicators", "1d", "AAPL"])
    graph = defs.resolve_asset_graph()
    assert graph.get(ind).parent_keys == {aapl_1d} and graph.get(ind).automation_condition is not None
    assert not graph.has(dg.AssetKey(["indicators", "1m", "AAPL"]))  # only the configured intervals
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW)
        assert run_range(defs, instance, "ohlcv_xnys_1d_job", [aapl_1d], *RANGE).success
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert tick.get_requested_partitions(ind) == set(SESSIONS)
        assert run_range(defs, instance, "indicators_xnys_1d_job", [ind], *RANGE).success
        for k in SESSIONS:
            for check in INDICATOR_CHECKS:
                assert check_status(instance, ind, check, k) == "SUCCEEDED", (k, check)
        (mat,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ind, asset_partitions=[SESSIONS[0]]), limit=1
        ).records
        assert mat.asset_materialization is not None
        assert mat.asset_materialization.metadata["warming_up"].value is True  # six sessions: no 20-bar SMA yet
    rows = Warehouse(url).read_indicators("AAPL", "1d", -(2**62), 2**62)
    assert len(rows) == len(SESSIONS) and rows["ret_1"].notna().sum() == len(SESSIONS) - 1


def test_weekly_assets_follow_every_day_of_their_week(tmp_path: Path) -> None:
    """``ohlcv/1w/AAPL`` on the daily sessions: the week's last session holds the bar, and a
    rewritten Monday re-derives its week's last session through the partition mapping."""
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    intervals = {"1d": {"window_days": 1095}, "1m": {"window_days": 730}, "1w": {"from": "1d"}}
    defs = build_definitions(small_universe(intervals=intervals), now=NOW, warehouse=WarehouseResource(url=url))
    weekly, daily = dg.AssetKey(["ohlcv", "1w", "AAPL"]), dg.AssetKey(["ohlcv", "1d", "AAPL"])
    graph = defs.resolve_asset_graph()
    assert graph.get(weekly).parent_keys == {daily}
    assert {k.name for k in graph.asset_check_keys if k.asset_key == weekly} == {*CHECK_NAMES, MATCHES_SOURCE}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW)
        # a week before RANGE too: a weekly partition waits until the sessions it maps to (its own and
        # the four before it) are stored: of the week of 11-18 only its last session, 11-22, has them
        assert run_range(defs, instance, "ohlcv_xnys_1d_job", [daily], "2024-11-18", RANGE[1]).success
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert tick.get_requested_partitions(weekly) == {"2024-11-22", *SESSIONS}
        assert run_range(defs, instance, "ohlcv_xnys_1w_job", [weekly], "2024-11-22", RANGE[1]).success
        for k in SESSIONS:  # every session checked; only Thanksgiving's Friday holds a bar (12-06 is not in range)
            for check in (*CHECK_NAMES, MATCHES_SOURCE):
                assert check_status(instance, weekly, check, k) == "SUCCEEDED", (k, check)
        wh = Warehouse(url)
        stored = wh.read_bars("AAPL", "1w", -(2**62), 2**62)
        xnys = get_calendar("XNYS")
        assert stored["ts"].tolist() == [xnys.bounds(date(2024, 11, d)).open_ms for d in (18, 25)]
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert tick.total_requested == 0

        # Monday's daily bar is written again: its week's last session is re-derived
        assert run_range(defs, instance, "ohlcv_xnys_1d_job", [daily], "2024-11-25", "2024-11-25").success
        tick = dg.evaluate_automation_conditions(defs, instance, evaluation_time=NOW, cursor=tick.cursor)
        assert "2024-11-29" in tick.get_requested_partitions(weekly)
        wh.dispose()
