"""Indicators from stored daily bars: the stored values are TA-Lib's over the stored series (and
SMA and returns equal an independent pandas computation); updating one session at a time gives
what a full recomputation gives; a partition near the start says it is warming up and stores
NULL, not a wrong number; damage fails ``matches_full_recomputation`` until re-derived."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.indicators import WARMUP_BARS, derive_indicators, verify_indicators
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.resample import SourceNotMaterializedError
from marketcov_dagster.lib.sources import SourceFailedChecksError
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Verdict, Warehouse
from marketcov_dagster.lib.warehouse.schema import INDICATOR_COLUMNS

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
SESSIONS = XNYS.sessions(date(2022, 1, 3), date(2024, 6, 28))  # ~626 sessions: more than the warm-up


def _ingest_daily(wh: Warehouse, days: list[date]) -> None:
    vendor = SyntheticVendor(lambda _s: XNYS)
    ingest_sessions(
        symbol="AAPL", interval="1d", calendar=XNYS, sessions=days, vendors=[vendor], warehouse=wh, run_id="src"
    )


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse file with AAPL's daily bars over SESSIONS (copied per test)."""
    path = tmp_path_factory.mktemp("ind") / "wh.sqlite"
    wh = Warehouse(f"sqlite:///{path}")
    _ingest_daily(wh, SESSIONS)
    wh.dispose()
    return path


@pytest.fixture
def wh(daily: Path, tmp_path: Path) -> Warehouse:
    copy = tmp_path / "wh.sqlite"
    copy.write_bytes(daily.read_bytes())
    return Warehouse(f"sqlite:///{copy}")


def _all(wh: Warehouse) -> pd.DataFrame:
    return wh.read_indicators("AAPL", "1d", -(2**62), 2**62)


def test_stored_values_are_ta_libs_and_pandas_agrees(wh: Warehouse) -> None:
    assert len(SESSIONS) > WARMUP_BARS
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS, warehouse=wh)
    bars = wh.read_bars("AAPL", "1d", -(2**62), 2**62)
    got = _all(wh)
    assert got["ts"].tolist() == bars["ts"].tolist()
    c, h, lo = (bars[k].to_numpy() for k in ("close", "high", "low"))
    expected = {
        "sma_200": talib.SMA(c, 200),
        "ema_12": talib.EMA(c, 12),
        "rsi_14": talib.RSI(c, 14),
        "atr_14": talib.ATR(h, lo, c, 14),
        "adx_14": talib.ADX(h, lo, c, 14),
        "macd_signal": talib.MACD(c, 12, 26, 9)[1],
    }
    for name, want in expected.items():
        np.testing.assert_allclose(got[name].to_numpy(), want, rtol=1e-12, equal_nan=True, err_msg=name)
    close = bars["close"]
    np.testing.assert_allclose(got["sma_50"], close.rolling(50).mean(), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["ret_20"], close.pct_change(20, fill_method=None), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(got["ret_252"], close / close.shift(252) - 1, rtol=1e-9, equal_nan=True)
    # the first bars have no 200-bar history: NULL, not a number computed from less
    assert got["sma_200"].iloc[:199].isna().all() and got["sma_200"].iloc[199:].notna().all()
    assert got["ret_1"].iloc[0] != got["ret_1"].iloc[0] and got["ret_1"].iloc[1:].notna().all()


def test_one_session_at_a_time_equals_a_full_recomputation(wh: Warehouse) -> None:
    head, tail = SESSIONS[:-5], SESSIONS[-5:]
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=head, warehouse=wh)
    for d in tail:  # the daily schedule's way: one new session per run
        derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=[d], warehouse=wh)
    incremental = _all(wh)
    full = _all(_fresh_full(wh))
    assert incremental["ts"].tolist() == full["ts"].tolist()
    for c in INDICATOR_COLUMNS:
        a, b = incremental[c].to_numpy(), full[c].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), c
        ok = ~np.isnan(a)
        assert np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok]).max()) < 1e-12, c
    outcomes = verify_indicators(wh, XNYS, "AAPL", "1d", SESSIONS)
    assert len(outcomes) == len(SESSIONS) and all(o.passed for per in outcomes.values() for o in per)


def _fresh_full(wh: Warehouse) -> Warehouse:
    wh.execute("DELETE FROM indicator_values")
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS, warehouse=wh)
    return wh


def test_early_partitions_say_they_are_warming_up(wh: Warehouse) -> None:
    results = derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS, warehouse=wh)
    first, late = results[0], results[-1]
    assert first.warming_up == INDICATOR_COLUMNS  # one bar: nothing has history yet
    assert first.metadata()["warming_up_indicators"] == list(INDICATOR_COLUMNS)
    assert "sma_200" in results[198].warming_up and "sma_200" not in results[199].warming_up
    assert late.warming_up == () and late.metadata()["warming_up"] is False
    outcome = verify_indicators(wh, XNYS, "AAPL", "1d", SESSIONS[:1])[SESSIONS[0].isoformat()][1]
    assert outcome.passed and "warming up" in outcome.description


def test_damage_fails_the_check_until_rederived(wh: Warehouse) -> None:
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS, warehouse=wh)
    day = SESSIONS[-3]
    b = XNYS.bounds(day)
    wh.execute("UPDATE indicator_values SET rsi_14 = rsi_14 + 0.5 WHERE ts = :t", {"t": b.open_ms})
    wh.execute("DELETE FROM indicator_values WHERE ts = :t", {"t": XNYS.bounds(SESSIONS[-2]).open_ms})
    found = verify_indicators(wh, XNYS, "AAPL", "1d", SESSIONS[-4:])
    assert all(o.passed for o in found[SESSIONS[-4].isoformat()])
    covers, matches = found[day.isoformat()]
    assert covers.passed and not matches.passed and "rsi_14" in matches.description
    assert not found[SESSIONS[-2].isoformat()][0].passed  # no row for a stored bar
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS[-3:-1], warehouse=wh)
    assert all(o.passed for per in verify_indicators(wh, XNYS, "AAPL", "1d", SESSIONS[-4:]).values() for o in per)


def test_nothing_is_computed_for_sessions_without_bars(wh: Warehouse) -> None:
    later = XNYS.sessions(date(2024, 7, 1), date(2024, 7, 3))
    with pytest.raises(SourceNotMaterializedError, match=r"3 session\(s\).*materialize ohlcv/1d/AAPL"):
        derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=later, warehouse=wh)
    assert _all(wh).empty


def test_indicators_round_trip_on_both_warehouses(warehouse: Warehouse) -> None:
    days = SESSIONS[-30:]
    _ingest_daily(warehouse, days)
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=days, warehouse=warehouse)
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=days[-3:], warehouse=warehouse)
    got = _all(warehouse)
    assert len(got) == 30 and got["sma_20"].iloc[:19].isna().all() and got["sma_20"].iloc[19:].notna().all()
    assert all(o.passed for per in verify_indicators(warehouse, XNYS, "AAPL", "1d", days).values() for o in per)


def test_indicators_are_never_derived_from_a_day_whose_checks_failed(wh: Warehouse) -> None:
    day = SESSIONS[-1].isoformat()
    wh.record_verdicts(
        "AAPL",
        "1d",
        [
            Verdict(day, "jumps_explained", False, "ERROR", "close moved -90.0%: looks like a 10-for-1 split"),
            Verdict(SESSIONS[-2].isoformat(), "bars_are_valid", False, "WARN", "vendor bars quarantined"),
        ],
        "check-run",
    )
    with pytest.raises(SourceFailedChecksError, match=rf"ohlcv/1d/AAPL {day} failed jumps_explained \(close moved"):
        derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS, warehouse=wh)
    assert wh.read_indicators("AAPL", "1d", -(2**62), 2**62).empty  # refused before writing anything
    # a warning does not block, and a passing verdict replaces the failed one
    wh.record_verdicts("AAPL", "1d", [Verdict(day, "jumps_explained", True, "ERROR", "explained")], "check-run-2")
    derive_indicators(symbol="AAPL", interval="1d", calendar=XNYS, sessions=SESSIONS, warehouse=wh)
    assert len(wh.read_indicators("AAPL", "1d", -(2**62), 2**62)) == len(SESSIONS)
