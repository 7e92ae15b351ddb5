"""From the CLI: one backfill materializes minute bars before the candles resampled from them and
daily bars before their indicators; ``marketcov bars --indicators`` reads them out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, marketcov

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

COLUMNS = ["ts", "open", "high", "low", "close", "volume", "sma_20", "ema_12", "rsi_14", "atr_14", "adx_14"]


def _closed_sessions(n: int) -> list[str]:
    """The latest ``n`` XNYS sessions that closed at least a day ago (whatever today is)."""
    cal = get_calendar("XNYS")
    now = datetime.now(UTC) - timedelta(days=1)
    last = cal.last_closed_session(now)
    assert last is not None
    return [d.isoformat() for d in cal.sessions(last - timedelta(days=3 * n), last)[-n:]]


def test_backfill_derives_after_its_sources_and_bars_shows_indicators(home: Path) -> None:
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["intervals"]["5m"] = {"from": "1m"}
    cfg["indicators"] = {"intervals": ["1d"]}
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    url = f"sqlite:///{home / 'wh.sqlite'}"
    env = base_env(home, url)
    days = _closed_sessions(3)
    out = marketcov(
        [
            "backfill",
            "--symbols",
            "AAPL",
            "--intervals",
            "1d,1m,5m",
            "--indicators",
            "--start",
            days[0],
            "--end",
            days[-1],
        ],
        env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    order = [line.split(":")[0] for line in out.stdout.splitlines() if " run " in line]
    assert order.index("ohlcv_xnys_1m_job") < order.index("ohlcv_xnys_5m_job")
    assert order.index("ohlcv_xnys_1d_job") < order.index("indicators_xnys_1d_job")
    assert "ohlcv/5m/AAPL" in out.stdout  # the coverage table lists the derived asset
    assert "indicators/1d/AAPL" in out.stdout  # and, asked for, the indicator asset

    # coverage of the indicator asset, from its own materialization history, beside its bars'
    doc = marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d", "--indicators", "--format", "json"], env)
    assert doc.returncode == 0, doc.stderr
    cov = {a["asset_key"]: a for a in json.loads(doc.stdout)["assets"]}
    assert set(cov) == {"ohlcv/1d/AAPL", "indicators/1d/AAPL"}
    bars, values = cov["ohlcv/1d/AAPL"], cov["indicators/1d/AAPL"]
    assert values["covered_sessions"] == bars["covered_sessions"] == 3
    assert values["first_session"] == days[0] and values["last_session"] == days[-1]
    assert values["rows"] == bars["rows"] == 3  # one row of indicators per daily bar
    plain = marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d", "--format", "json"], env)
    assert [a["asset_key"] for a in json.loads(plain.stdout)["assets"]] == ["ohlcv/1d/AAPL"]
    none = marketcov(["coverage", "--intervals", "1m", "--indicators"], env)
    assert none.returncode == 2 and "--indicators" in none.stderr and "Traceback" not in none.stderr

    wh = Warehouse(url)
    cal = get_calendar("XNYS")
    for d in days:
        b = cal.bounds(datetime.fromisoformat(d).date())
        assert len(wh.read_bars("AAPL", "5m", b.open_ms, b.close_ms)) == b.expected_bars("5m")
    wh.dispose()

    shown = marketcov(
        ["bars", "AAPL", "--interval", "1d", "--indicators", "--format", "json", "--start", days[0], "--end", days[-1]],
        env,
    )
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert len(rows) == 3 and all(set(COLUMNS) <= set(r) for r in rows)
    assert rows[0]["ts"].endswith("Z") and rows[1]["ret_1"] is not None
    assert rows[0]["sma_20"] is None  # three sessions of history: still warming up, null not a guess
    decimals = [
        len(repr(v).split(".")[-1]) for r in rows for k, v in r.items() if k not in COLUMNS[:6] and v is not None
    ]
    assert decimals and max(decimals) <= 10, decimals  # rounded: no float noise like 127.01200000000001
    assert "no indicators stored" not in shown.stderr

    refused = marketcov(["bars", "AAPL", "--interval", "1m", "--indicators"], env)
    assert refused.returncode == 2 and "indicators" in refused.stderr and "Traceback" not in refused.stderr

    # status: the indicator asset is as fresh as its newest stored indicator row
    def status() -> dict[str, dict[str, object]]:
        out = marketcov(["status", "--symbols", "AAPL", "--intervals", "1d", "--indicators", "--format", "json"], env)
        assert out.returncode == 0, out.stderr
        return {a["asset_key"]: a for a in json.loads(out.stdout)["assets"]}

    fresh = status()
    assert set(fresh) == {"ohlcv/1d/AAPL", "indicators/1d/AAPL"}
    assert fresh["indicators/1d/AAPL"]["latest_end"] == fresh["ohlcv/1d/AAPL"]["latest_end"] is not None
    wh = Warehouse(url)
    wh.execute("DELETE FROM indicator_values WHERE symbol = 'AAPL'")
    wh.dispose()
    gone = status()
    assert gone["indicators/1d/AAPL"]["no_data"] and not gone["ohlcv/1d/AAPL"]["no_data"]
    # read out now, every indicator is null; the note tells never computed from warming up
    blank = marketcov(
        ["bars", "AAPL", "--interval", "1d", "--indicators", "--format", "csv", "--start", days[0], "--end", days[-1]],
        env,
    )
    assert blank.returncode == 0 and len(blank.stdout.splitlines()) == 4, blank.stderr
    assert f"3 bar(s) of ohlcv/1d/AAPL {days[0]}..{days[-1]} have no indicators stored" in blank.stderr
