"""Cross-interval truth: each daily partition is checked against the session's minute bars. The
embedded vendor is consistent by construction, so the check passes there; damage fails it (WARN
by default, ERROR when configured) and lands in the remediation log; a session without minute
bars passes, saying there was nothing to compare."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter  # no public way to filter check history by partition

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.crosscheck import daily_vs_minutes
from marketcov_dagster.lib.universe import CrossIntervalSettings
from marketcov_dagster.lib.verify import DAILY_MATCHES_MINUTES
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.conftest import small_universe
from marketcov_dagster_tests.defs.test_assets import AAPL_1M, NOW, RANGE, SESSIONS, check_status, run_range

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

AAPL_1D = dg.AssetKey(["ohlcv", "1d", "AAPL"])


def _evaluation(instance: dg.DagsterInstance, partition: str) -> dg.AssetCheckEvaluation:
    (record,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(AAPL_1D, DAILY_MATCHES_MINUTES), limit=1, partition_filter=PartitionKeyFilter(key=partition)
    )
    assert record.event is not None and record.event.dagster_event is not None
    data = record.event.dagster_event.asset_check_evaluation_data
    assert isinstance(data, dg.AssetCheckEvaluation)
    return data


@pytest.mark.parametrize("severity", ["WARN", "ERROR"])
def test_daily_bars_are_checked_against_the_sessions_minutes(tmp_path: Path, severity: str) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    universe = small_universe(daily_vs_minutes={"severity": severity})
    defs = build_definitions(universe, now=NOW, warehouse=WarehouseResource(url=url))
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == AAPL_1D}
    assert DAILY_MATCHES_MINUTES in checks
    assert not any(
        k.name == DAILY_MATCHES_MINUTES for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == AAPL_1M
    )  # minute assets have nothing finer to agree with
    wh = Warehouse(url)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        # minutes for all but the first session; daily bars for all
        assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], SESSIONS[1], RANGE[1]).success
        assert run_range(defs, instance, "ohlcv_xnys_1d_job", [AAPL_1D], *RANGE).success
        for k in SESSIONS[1:]:
            assert check_status(instance, AAPL_1D, DAILY_MATCHES_MINUTES, k) == "SUCCEEDED", k
            assert _evaluation(instance, k).metadata["compared"].value is True
        first = _evaluation(instance, SESSIONS[0])
        assert first.passed and "nothing to compare" in (first.description or "")

        # the daily high of the early close falls below a minute high; the close drifts 1 %
        b = get_calendar("XNYS").bounds(date.fromisoformat("2024-11-29"))
        wh.execute(
            "UPDATE bars SET high = (SELECT MAX(high) FROM bars WHERE symbol='AAPL' AND interval='1m' "
            "AND ts >= :o AND ts < :c) - 0.01, close = close * 1.01 WHERE symbol='AAPL' AND interval='1d' AND ts = :o",
            {"o": b.open_ms, "c": b.close_ms},
        )
        assert run_range(defs, instance, "ohlcv_xnys_1d_verify_job", [], *RANGE).success  # checks do not fail runs
        bad = _evaluation(instance, "2024-11-29")
        assert not bad.passed and bad.severity == dg.AssetCheckSeverity(severity)
        assert "< minute high" in (bad.description or "") and "close" in (bad.description or "")
        assert check_status(instance, AAPL_1D, DAILY_MATCHES_MINUTES, "2024-12-02") == "SUCCEEDED"
    log = wh.remediation(kinds=["interval_mismatch"])
    assert log["session"].tolist() == ["2024-11-29"] and "minute high" in log["detail"].iloc[0]
    wh.dispose()


def test_tolerances_decide_open_close_and_volume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(small_universe(), now=NOW, warehouse=WarehouseResource(url=url))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], "2024-12-02", "2024-12-02").success
        assert run_range(defs, instance, "ohlcv_xnys_1d_job", [AAPL_1D], "2024-12-02", "2024-12-02").success
    wh = Warehouse(url)
    day = date(2024, 12, 2)
    o = get_calendar("XNYS").bounds(day).open_ms
    # the vendor's daily volume includes the auctions: 6 % more than the minutes' sum
    wh.execute("UPDATE bars SET volume = volume * 1.06 WHERE symbol='AAPL' AND interval='1d' AND ts = :o", {"o": o})
    cal = get_calendar("XNYS")
    assert daily_vs_minutes(wh, cal, "AAPL", [day], CrossIntervalSettings())["2024-12-02"].passed
    strict = CrossIntervalSettings(volume_tolerance_pct=5)
    outcome = daily_vs_minutes(wh, cal, "AAPL", [day], strict)["2024-12-02"]
    assert not outcome.passed and "volume" in outcome.description and "6.0% > 5%" in outcome.description
    wh.execute("UPDATE bars SET open = open * 1.002 WHERE symbol='AAPL' AND interval='1d' AND ts = :o", {"o": o})
    loose = daily_vs_minutes(wh, cal, "AAPL", [day], CrossIntervalSettings(open_close_tolerance_bps=25))
    tight = daily_vs_minutes(wh, cal, "AAPL", [day], CrossIntervalSettings(open_close_tolerance_bps=10))
    assert loose["2024-12-02"].passed and not tight["2024-12-02"].passed
    assert "open" in tight["2024-12-02"].description and "20.0 bps > 10" in tight["2024-12-02"].description
    wh.dispose()
