"""A ledger change re-derives only the symbol's indicators from the action's ex-date on: the sensor
asks for exactly that range, and the partitions before it are bit for bit what they were."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import numpy as np

from marketcov_dagster.defs.actions import LEDGER_REDERIVE_SENSOR, LEDGER_TAG
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.indicators import derive_indicators
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.prices.ledger import refresh_ledger
from marketcov_dagster.lib.prices.rederive import plan_rederive
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.conftest import small_universe

XNYS = get_calendar("XNYS")
NOW = datetime(2025, 1, 6, tzinfo=UTC)  # pinned: the window holds every session below
NVDA_SPLIT = date(2024, 6, 10)
SESSIONS = XNYS.sessions(date(2023, 3, 1), date(2024, 8, 30))
UNIVERSE = small_universe(
    indicators={"intervals": ["1d"]},
    asset_classes={
        "us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d"], "symbols": ["NVDA", "AAPL"]}
    },
)


def _loaded(url: str) -> Warehouse:
    wh = Warehouse(url)
    vendor = SyntheticVendor(lambda _s: XNYS)
    for symbol in ("NVDA", "AAPL"):
        kw = {"symbol": symbol, "interval": "1d", "calendar": XNYS, "sessions": SESSIONS, "warehouse": wh}
        ingest_sessions(**kw, vendors=[vendor], run_id="load", now=NOW)  # type: ignore[arg-type]
        derive_indicators(**kw, now=NOW)  # type: ignore[arg-type]  # before the ledger knows the split
    return wh


def _all(wh: Warehouse, symbol: str) -> np.ndarray:
    return wh.read_indicators(symbol, "1d", -(2**62), 2**62).drop(columns="ts").to_numpy()


def test_the_plan_covers_the_symbols_indicators_from_the_ex_date_on(tmp_path: Path) -> None:
    wh = _loaded(f"sqlite:///{tmp_path / 'wh.sqlite'}")
    specs = [s for s in UNIVERSE.all_specs if s.indicators]
    before = datetime(2025, 1, 2, tzinfo=UTC)
    assert plan_rederive(wh, specs, before) == ([], before)
    refresh_ledger(wh, [SyntheticVendor(lambda _s: XNYS)], ["NVDA"], SESSIONS[0], SESSIONS[-1], now=NOW)
    (plan,), newest = plan_rederive(wh, specs, before)
    assert (plan.asset_key, plan.first, plan.last, plan.ex_date) == (
        "indicators/1d/NVDA",
        NVDA_SPLIT,
        SESSIONS[-1],
        NVDA_SPLIT,
    )
    assert newest == NOW and plan_rederive(wh, specs, newest) == ([], newest)  # seen once


def test_the_sensor_rederives_from_the_ex_date_and_leaves_earlier_partitions_untouched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    wh = _loaded(url)
    nvda_before, aapl_before = _all(wh, "NVDA"), _all(wh, "AAPL")
    resource = WarehouseResource(url=url)
    defs = build_definitions(UNIVERSE, now=NOW, warehouse=resource, clock=lambda: NOW)
    sensor = defs.get_sensor_def(LEDGER_REDERIVE_SENSOR)
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> dg.SensorResult:  # type: ignore[type-arg]
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": resource})
            result = sensor(ctx)
            assert isinstance(result, dg.SensorResult)
            return result

        first = tick(None)  # an empty ledger: watch from the start
        assert not first.run_requests and first.cursor is not None
        refresh_ledger(wh, [SyntheticVendor(lambda _s: XNYS)], ["NVDA"], SESSIONS[0], SESSIONS[-1], now=NOW)
        second = tick(first.cursor)
        (request,) = second.run_requests or []
        assert request.asset_selection == [dg.AssetKey(["indicators", "1d", "NVDA"])]
        assert request.tags[RANGE_START_TAG] == NVDA_SPLIT.isoformat()
        assert request.tags[RANGE_END_TAG] == SESSIONS[-1].isoformat()
        assert "from ex-date 2024-06-10" in request.tags[LEDGER_TAG]
        assert not (tick(second.cursor).run_requests or [])  # the same change never asked for twice

        job = defs.resolve_job_def(request.job_name or "")
        run = job.execute_in_process(instance=instance, tags=request.tags, asset_selection=request.asset_selection)
        assert run.success
    nvda_after = _all(wh, "NVDA")
    i = SESSIONS.index(NVDA_SPLIT)
    # before the ex-date: the same values, bit for bit; from it on: the split is no -90 % return
    assert np.array_equal(nvda_after[:i], nvda_before[:i], equal_nan=True)
    ret_1 = list(wh.read_indicators("NVDA", "1d", -(2**62), 2**62).columns.drop("ts")).index("ret_1")
    assert abs(nvda_before[i, ret_1] + 0.9) < 0.05 and abs(nvda_after[i, ret_1]) < 0.1
    assert np.array_equal(_all(wh, "AAPL"), aapl_before, equal_nan=True)  # another symbol: untouched
