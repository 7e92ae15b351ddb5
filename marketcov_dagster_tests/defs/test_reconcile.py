"""Cross-vendor reconciliation against real clients and their loopback servers: vendors that
agree leave no finding; a second vendor missing or moving bars is a ``vendor_divergence``; the
serving vendor answering differently now is ``revised``; stored data never changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.reconcile import RECONCILE_JOB
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.reconcile import compare_bars, sample_sessions
from marketcov_dagster.lib.universe import Universe
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.defs.test_real_vendors import EQUITY_RANGE, NOW, universe, vendors_resource
from marketcov_dagster_tests.fakes.vendor_servers import FakeAlpaca, FakePolygon, FakeVendorServer, regular_bars

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)


@pytest.fixture
def servers() -> Iterator[dict[str, FakeVendorServer]]:
    with FakeAlpaca() as a, FakePolygon() as p:
        yield {"alpaca": a, "polygon": p, "binance": a}


def test_reconciliation_finds_divergences_and_revisions_without_changing_data(
    tmp_path: Path, servers: dict[str, FakeVendorServer]
) -> None:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    u = universe(["alpaca", "polygon"], ["binance"])
    sample_3 = u.config.reconciliation.model_copy(update={"sample_sessions": 3})
    u = Universe(u.config.model_copy(update={"reconciliation": sample_3}), u.source)
    defs = build_definitions(u, now=NOW, warehouse=WarehouseResource(url=url), vendors=vendors_resource(servers))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        start, end = EQUITY_RANGE
        backfill = defs.resolve_job_def("ohlcv_xnys_1m_job").execute_in_process(
            instance=instance,
            tags={RANGE_START_TAG: start, RANGE_END_TAG: end},
            asset_selection=[dg.AssetKey(["ohlcv", "1m", "AAPL"])],
        )
        assert backfill.success
        wh = Warehouse(url)
        before = wh.read_bars("AAPL", "1m", 0, 2**62)
        sampled = sample_sessions(sorted(set(wh.lineage("AAPL", "1m")["session"])), 3)
        assert sampled == ["2024-11-25", "2024-11-27", "2024-12-03"]

        # both vendors serve the same market: nothing to report
        assert defs.resolve_job_def(RECONCILE_JOB).execute_in_process(instance=instance).success
        assert wh.remediation(kinds=["vendor_divergence", "revised"]).empty

        xnys = get_calendar("XNYS")
        nov27 = xnys.bounds(date(2024, 11, 27))
        dec03 = xnys.bounds(date(2024, 12, 3))
        servers["polygon"].missing.update({nov27.open_ms + 60_000 * k for k in range(3)})  # polygon lacks 3 bars
        servers["alpaca"].missing.add(dec03.open_ms + 60_000 * 100)  # alpaca revised 12-03: one bar gone
        assert defs.resolve_job_def(RECONCILE_JOB).execute_in_process(instance=instance).success
        log = wh.remediation(kinds=["vendor_divergence", "revised"])
        found = {(r["session"], r["kind"], r["vendor"]) for r in log.to_dict("records")}
        assert ("2024-11-27", "vendor_divergence", "polygon") in found
        assert ("2024-12-03", "revised", "alpaca") in found
        # the stored bars (alpaca's first answer) still agree with polygon on 12-03; 11-25 agrees
        assert found == {("2024-11-27", "vendor_divergence", "polygon"), ("2024-12-03", "revised", "alpaca")}
        nov = log[(log["session"] == "2024-11-27") & (log["kind"] == "vendor_divergence")]["detail"].iloc[0]
        assert "alpaca (stored) vs polygon: 3 bar(s) only stored" in nov
        # findings only: the stored bars are exactly what they were
        after = wh.read_bars("AAPL", "1m", 0, 2**62)
        assert after.equals(before)
        observed = instance.fetch_observations(dg.AssetKey(["ohlcv", "1m", "AAPL"]), limit=1).records[0]
        assert observed.asset_observation is not None
        metadata = observed.asset_observation.metadata
        assert metadata["vendor_divergences"].value == 1 and metadata["revised_sessions"].value == 1  # type: ignore[union-attr]
        # and the coverage report lists them
        assert defs.resolve_job_def("coverage_report_job").execute_in_process(instance=instance).success
        report = instance.get_latest_materialization_event(dg.AssetKey("coverage_report"))
        assert report is not None and report.asset_materialization is not None
        table = str(report.asset_materialization.metadata["cross_checks"].value)
        assert "| AAPL 1m | vendor_divergence | 1 | 2024-11-27 |" in table
        assert "| AAPL 1m | revised | 1 | 2024-12-03 |" in table
        wh.dispose()


def test_compare_bars_tolerances() -> None:
    ours = regular_bars("AAPL", "1m", date(2024, 12, 2), date(2024, 12, 2))
    theirs = ours.copy()
    theirs.loc[5, "close"] = theirs.loc[5, "close"] * 1.0005  # 5 bps
    theirs.loc[6, "volume"] = theirs.loc[6, "volume"] * 1.08
    loose = compare_bars(ours, theirs, price_bps=10, volume_pct=10)
    assert not loose.diverges
    tight = compare_bars(ours, theirs, price_bps=2, volume_pct=5)
    assert tight.price_off == 1 and tight.volume_off == 1 and "close" in tight.example
