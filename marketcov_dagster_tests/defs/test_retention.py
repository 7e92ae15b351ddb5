"""Retention through Dagster: old minute partitions are deleted, and coverage calls them expired."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.defs.retention import RETENTION_JOB
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.warehouse import RETENTION, Warehouse
from marketcov_dagster_tests.conftest import small_universe

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

THEN = datetime(2025, 1, 31, 22, 0, tzinfo=UTC)
LATER = datetime(2025, 2, 7, 22, 0, tzinfo=UTC)  # the 10-day window now starts on 2025-01-28
EXPIRED = ["2025-01-21", "2025-01-22", "2025-01-23", "2025-01-24", "2025-01-27"]
KEY = dg.AssetKey(["ohlcv", "1m", "AAPL"])
DAILY = dg.AssetKey(["ohlcv", "1d", "AAPL"])


def test_retention_deletes_old_minute_bars_and_coverage_reports_them_expired(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    universe = small_universe(
        intervals={"1d": {"window_days": 10}, "1m": {"window_days": 10}},
        asset_classes={
            "us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d", "1m"], "symbols": ["AAPL"]}
        },
    )
    specs = universe.specs
    wh = Warehouse(url)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        then = build_definitions(universe, now=THEN, warehouse=WarehouseResource(url=url))
        tags = {RANGE_START_TAG: "2025-01-21", RANGE_END_TAG: "2025-01-31"}
        for job, key in (("ohlcv_xnys_1m_job", KEY), ("ohlcv_xnys_1d_job", DAILY)):
            assert then.resolve_job_def(job).execute_in_process(instance=instance, asset_selection=[key], tags=tags)
        assert len(instance.get_materialized_partitions(KEY)) == 9
        before = wh.count_bars("AAPL", "1m")

        later = build_definitions(universe, now=LATER, warehouse=WarehouseResource(url=url), clock=lambda: LATER)
        for _ in range(2):  # the second run finds nothing left to do
            assert later.resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance).success

        cutoff = get_calendar("XNYS").partition_window_ms(date(2025, 1, 28))[0]
        minute_bars = wh.read_bars("AAPL", "1m", 0, 2**62)
        assert len(minute_bars) == before - 5 * 390 and int(minute_bars["ts"].min()) >= cutoff
        assert wh.count_bars("AAPL", "1d") == 9  # daily bars do not expire by default
        lineage = wh.lineage("AAPL", "1m")
        expired_rows = lineage[lineage["vendor"] == RETENTION]
        assert sorted(expired_rows["session"]) == EXPIRED and set(expired_rows["rows"]) == {0}
        assert expired_rows["previous_checksum"].notna().all()

        # Dagster agrees: the expired sessions are no longer partitions of the asset
        pdef = later.resolve_assets_def(KEY).partitions_def
        assert pdef is not None
        with dg.partition_loading_context(effective_dt=LATER):
            keys = pdef.get_partition_keys()
        assert keys[0] == "2025-01-28" and not set(EXPIRED) & set(keys)
        materialized = sorted(set(instance.get_materialized_partitions(KEY)) & set(keys))
        assert materialized == ["2025-01-28", "2025-01-29", "2025-01-30", "2025-01-31"]
        (minute, daily) = sorted(coverage_for(instance, specs, now=LATER), key=lambda a: a.interval, reverse=True)
        assert minute.interval == "1m"
        assert minute.expired_sessions == 5 and minute.expired_before == "2025-01-28"
        assert not set(EXPIRED) & set(minute.missing)
        assert minute.missing == ["2025-02-03", "2025-02-04", "2025-02-05", "2025-02-06", "2025-02-07"]
        assert minute.covered_sessions == 4 and daily.expired_sessions == 0
