"""A user's downstream asset receives an OHLCV partition's bars as a DataFrame through the
``ohlcv_bars`` IO manager, exactly the bars in the warehouse; and ``marketcov bars`` streams the
same bars out as CSV, JSON and Parquet."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.barsio import read_sessions
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.warehouse import Verdict, Warehouse
from marketcov_dagster_tests.conftest import small_universe
from marketcov_dagster_tests.defs.test_assets import AAPL_1M, NOW, RANGE, run_range

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

EARLY_CLOSE = "2024-11-29"  # 210 minutes


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[tuple[dg.Definitions, dg.DagsterInstance, Warehouse, str]]:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(small_universe(), now=NOW, warehouse=WarehouseResource(url=url))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], *RANGE).success
        yield defs, instance, Warehouse(url), url


def test_a_downstream_asset_gets_its_partitions_bars_as_a_dataframe(
    loaded: tuple[dg.Definitions, dg.DagsterInstance, Warehouse, str],
) -> None:
    defs, instance, wh, _ = loaded
    upstream = defs.resolve_assets_def(AAPL_1M)
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=upstream.partitions_def, ins={"bars": dg.AssetIn(key=AAPL_1M)})
    def aapl_vwap(context, bars: pd.DataFrame) -> float:  # type: ignore[no-untyped-def]  # Dagster reads the annotation
        seen[context.partition_key] = bars
        return float((bars["close"] * bars["volume"]).sum() / bars["volume"].sum())

    @dg.asset(ins={"bars": dg.AssetIn(key=AAPL_1M)})
    def aapl_bar_count(bars: pd.DataFrame) -> int:  # unpartitioned: every stored session at once
        seen["all"] = bars
        return len(bars)

    # the user's code location: marketcov's definitions plus their own assets and jobs
    merged = dg.Definitions.merge(
        defs,
        dg.Definitions(
            assets=[aapl_vwap, aapl_bar_count],
            jobs=[dg.define_asset_job("vwap_job", [aapl_vwap]), dg.define_asset_job("count_job", [aapl_bar_count])],
        ),
    )
    result = merged.resolve_job_def("vwap_job").execute_in_process(instance=instance, partition_key=EARLY_CLOSE)
    assert result.success
    bars = seen[EARLY_CLOSE]
    assert list(bars.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert str(bars["ts"].dt.tz) == "UTC"
    assert len(bars) == 210 and bars["ts"].is_monotonic_increasing
    b = get_calendar("XNYS").bounds(date.fromisoformat(EARLY_CLOSE))
    stored = wh.read_bars("AAPL", "1m", b.open_ms, b.close_ms)
    assert [int(t.timestamp() * 1000) for t in bars["ts"]] == stored["ts"].tolist()
    for c in ("open", "high", "low", "close", "volume"):
        assert bars[c].tolist() == stored[c].tolist()
    assert result.output_for_node("aapl_vwap") == pytest.approx(
        (stored["close"] * stored["volume"]).sum() / stored["volume"].sum()
    )

    result = merged.resolve_job_def("count_job").execute_in_process(instance=instance)
    assert result.success and result.output_for_node("aapl_bar_count") == wh.count_bars("AAPL", "1m") == 6 * 390 - 180

    # a partition whose latest check failed is never handed on: the step fails, naming it and the check
    wh.record_verdicts("AAPL", "1m", [Verdict(EARLY_CLOSE, "checksum_matches", False, "ERROR", "hash moved")], "v")
    vwap = merged.resolve_job_def("vwap_job")
    refused = vwap.execute_in_process(instance=instance, partition_key=EARLY_CLOSE, raise_on_error=False)
    assert not refused.success and seen[EARLY_CLOSE] is bars  # the asset's code never ran again
    error = next(e for e in refused.all_events if e.is_step_failure).step_failure_data.error
    assert error is not None and f"ohlcv/1m/AAPL {EARLY_CLOSE} failed checksum_matches (hash moved)" in str(error)


def test_a_downstream_asset_can_ask_for_adjusted_bars_and_prove_them(
    loaded: tuple[dg.Definitions, dg.DagsterInstance, Warehouse, str],
) -> None:
    defs, instance, wh, _ = loaded
    ex = date(2024, 12, 3)  # a 2-for-1 split on the range's last session: every earlier bar is halved
    split = CorporateAction("AAPL", "split", ex, "test", "aapl-2024-12-03", ratio_from=1.0, ratio_to=2.0)
    wh.record_actions("test", ["AAPL"], date(2024, 11, 1), date(2024, 12, 31), [split])
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(ins={"bars": dg.AssetIn(key=AAPL_1M, metadata={"adjust": "all"})})
    def aapl_adjusted(bars: pd.DataFrame) -> int:
        seen["adjusted"] = bars
        return len(bars)

    merged = dg.Definitions.merge(
        defs, dg.Definitions(assets=[aapl_adjusted], jobs=[dg.define_asset_job("adj_job", [aapl_adjusted])])
    )
    assert merged.resolve_job_def("adj_job").execute_in_process(instance=instance).success
    bars = seen["adjusted"]
    assert bars.attrs["adjust"] == "all" and bars.attrs["as_of"] == ex.isoformat()
    assert [a["description"] for a in bars.attrs["actions"]] == [split.describe()]
    stored = wh.read_bars("AAPL", "1m", -(2**62), 2**62)
    before = (bars["ts"] < pd.Timestamp(get_calendar("XNYS").bounds(ex).open_ms, unit="ms", tz="UTC")).to_numpy()
    assert before.any() and not before.all()
    assert (bars["price_factor"][before] == 0.5).all() and (bars["price_factor"][~before] == 1.0).all()
    for c in ("open", "high", "low", "close"):  # raw = adjusted / factor, on every bar
        assert (bars[c] / bars["price_factor"]).round(8).tolist() == stored[c].round(8).tolist()
    assert (bars["volume"] / bars["volume_factor"]).tolist() == pytest.approx(stored["volume"].tolist())


def _bars_cli(args: list[str], url: str, home: Path) -> subprocess.CompletedProcess[str]:
    cfg: dict[str, Any] = {
        "intervals": {"1d": {"window_days": 1095}, "1m": {"window_days": 730, "min_completeness": 0.98}},
        "asset_classes": {
            "us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d", "1m"], "symbols": ["AAPL"]}
        },
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(home), "MARKETCOV_CONFIG": str(home / "marketcov.yaml")}
    env["MARKETCOV_WAREHOUSE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "marketcov_dagster.cli", "bars", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=home,
    )


def test_marketcov_bars_streams_csv_json_and_parquet(
    loaded: tuple[dg.Definitions, dg.DagsterInstance, Warehouse, str], tmp_path: Path
) -> None:
    _, _, wh, url = loaded
    home = Path(tmp_path / "cli")
    home.mkdir()
    sessions = [date.fromisoformat(d) for d in ("2024-11-27", EARLY_CLOSE)]
    expected = read_sessions(wh, get_calendar("XNYS"), "AAPL", "1m", sessions)
    assert len(expected) == 390 + 210
    span = ["--interval", "1m", "--start", "2024-11-27", "--end", EARLY_CLOSE]

    out = _bars_cli(["AAPL", *span, "--format", "json"], url, home)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert len(rows) == 600 and set(rows[0]) == {"ts", "open", "high", "low", "close", "volume"}
    assert rows[0]["ts"] == expected["ts"][0].isoformat().replace("+00:00", "Z")  # the 11-28 holiday is skipped
    assert [r["close"] for r in rows] == expected["close"].tolist()

    out = _bars_cli(["AAPL", *span], url, home)
    csv_rows = pd.read_csv(io.StringIO(out.stdout))
    assert out.returncode == 0 and len(csv_rows) == 600
    assert csv_rows["volume"].tolist() == expected["volume"].tolist()  # repr floats round-trip exactly

    target = home / "aapl.parquet"
    out = _bars_cli(["AAPL", *span, "--format", "parquet", "--output", str(target)], url, home)
    assert out.returncode == 0 and "600 bar(s)" in out.stderr
    back = pd.read_parquet(target)
    assert back["ts"].dt.tz is not None and back["open"].tolist() == expected["open"].tolist()

    for bad, message in (
        (["ZZZZ"], "unknown symbol"),
        (["AAPL", "--interval", "7m"], "unknown interval"),
        (["AAPL", "--start", "20241127"], "is not a date"),
        (["AAPL", "--start", EARLY_CLOSE, "--end", "2024-11-27"], "is after"),
        (["AAPL", "--start", "2024-11-28", "--end", "2024-11-28"], "no XNYS session"),
        (["AAPL", "--format", "parquet"], "give --output FILE"),
    ):
        out = _bars_cli(bad, url, home)
        assert out.returncode == 2 and message in out.stderr and out.stdout == "", (bad, out.stderr)
