"""The coverage report asset: markdown table and heatmap in its metadata, HTML/CSV/PNG on disk."""

from __future__ import annotations

import base64
import io
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.report import REPORT_JOB, REPORT_KEY
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.report import CLOSED, COLOURS, COMPLETE, MISSING, OUTSIDE, heatmap
from marketcov_dagster_tests.conftest import small_universe

NOW = datetime(2025, 2, 7, 22, 0, tzinfo=UTC)
AAPL = dg.AssetKey(["ohlcv", "1d", "AAPL"])


def test_report_asset_shows_coverage_and_a_heatmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETCOV_REPORT_DIR", str(tmp_path / "reports"))
    universe = small_universe(
        intervals={"1d": {"window_days": 10}},
        asset_classes={
            "us": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d"], "symbols": ["AAPL", "MSFT"]}
        },
        indicators={"intervals": ["1d"]},
    )
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(universe, now=NOW, warehouse=WarehouseResource(url=url), clock=lambda: NOW)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        tags = {RANGE_START_TAG: "2025-01-28", RANGE_END_TAG: "2025-02-04"}  # AAPL misses 02-05..02-07
        ingest = defs.resolve_job_def("ohlcv_xnys_1d_job").execute_in_process(
            instance=instance, asset_selection=[AAPL], tags=tags
        )
        assert ingest.success
        indicators = defs.resolve_job_def("indicators_xnys_1d_job").execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(["indicators", "1d", "AAPL"])], tags=tags
        )
        assert indicators.success
        assert defs.resolve_job_def(REPORT_JOB).execute_in_process(instance=instance).success
        event = instance.get_latest_materialization_event(REPORT_KEY)
        assert event is not None and event.asset_materialization is not None
        meta = event.asset_materialization.metadata

        table = str(meta["coverage"].value)
        assert "| `ohlcv/1d/AAPL` | 66.67 | 6/9 | 1 | 3 | 0 | 0 | 2025-02-04 |" in table
        assert "| `ohlcv/1d/MSFT` | 0.00 | 0/9 | 0 | 9 | 0 | 0 | - | no data yet |" in table
        # the indicator assets are reported like their bars, each from its own history
        assert "| `indicators/1d/AAPL` | 66.67 | 6/9 | 1 | 3 | 0 | 0 | 2025-02-04 |" in table
        assert "| `indicators/1d/MSFT` | 0.00 | 0/9 | 0 | 9 | 0 | 0 | - | no data yet |" in table
        assert meta["assets"].value == 4 and meta["missing_sessions"].value == 24

        picture = str(meta["heatmap"].value)
        png = base64.b64decode(picture.split("base64,")[1].rstrip(")"))
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.width > 60 * 12 and img.height > 2 * 12
        colours = {c for _, c in img.convert("RGB").getcolors(maxcolors=100_000) or []}
        assert {COLOURS[COMPLETE], COLOURS[MISSING], COLOURS[CLOSED]} <= colours

        html = (tmp_path / "reports" / "coverage.html").read_text()
        assert "ohlcv/1d/AAPL" in html and "data:image/png;base64," in html
        csv_lines = (tmp_path / "reports" / "coverage.csv").read_text().splitlines()
        assert csv_lines[0].startswith("asset_key,") and len(csv_lines) == 5
        assert (tmp_path / "reports" / "coverage_heatmap.png").read_bytes() == png

        # refreshed after every successful run, except its own
        sensor = defs.get_repository_def().get_sensor_def("coverage_report_after_runs")
        for run_id, wanted in (
            (ingest.run_id, True),
            (indicators.run_id, True),
            (instance.get_runs(limit=1)[0].run_id, False),
        ):
            run = instance.get_run_by_id(run_id)
            assert run is not None
            event_ = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records[0]
            ctx = dg.build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_instance=instance,
                dagster_run=run,
                dagster_event=event_.event_log_entry.dagster_event,  # type: ignore[arg-type]
            )
            result = sensor(ctx)  # type: ignore[operator]
            assert isinstance(result, dg.RunRequest) is wanted, result


def test_heatmap_states_follow_the_calendar() -> None:
    from marketcov_dagster.lib.coverage import AssetCoverage

    cov = AssetCoverage(
        "ohlcv/1d/AAPL",
        "AAPL",
        "1d",
        "XNYS",
        5,
        3,
        60.0,
        "2025-02-03",
        "2025-02-07",
        3,
        [],
        ["2025-02-05"],
        [],
        first_expected="2025-02-03",
        last_expected="2025-02-07",
    )
    hm = heatmap([cov], date(2025, 2, 9), days=10)
    states = dict(zip([d.isoformat() for d in hm.days], hm.rows[0][1], strict=True))
    assert states["2025-02-01"] == CLOSED and states["2025-02-02"] == CLOSED  # weekend
    assert states["2025-01-31"] == OUTSIDE  # before the window
    assert states["2025-02-05"] == MISSING and states["2025-02-04"] == COMPLETE
