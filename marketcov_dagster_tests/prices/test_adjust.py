"""Adjusted views derived on read, with proof: every adjusted bar returns to its stored raw bar,
the factors compose as products of the ledger's actions, point-in-time indicators equal TA-Lib on
independently adjusted closes, and ``jumps_explained`` finds what the ledger misses."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from marketcov_dagster.lib.barsio import iter_bars
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.indicators import derive_indicators
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.prices.adjust import PRICE_COLUMNS, session_days, unadjust
from marketcov_dagster.lib.prices.factors import Adjust, Applied, cumulative
from marketcov_dagster.lib.prices.jumps import jumps_explained
from marketcov_dagster.lib.prices.ledger import adjusted_stream, read_adjusted, refresh_ledger
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse

XNYS = get_calendar("XNYS")
NOW = datetime(2026, 1, 5, tzinfo=UTC)  # pinned: every history below ends before it
NVDA_SPLIT, JPM_REVERSE = date(2024, 6, 10), date(2025, 3, 17)


@pytest.fixture
def wh() -> Iterator[Warehouse]:
    w = Warehouse("sqlite://")
    yield w
    w.dispose()


def load(wh: Warehouse, symbol: str, interval: Interval, first: date, last: date, ledger: bool = True) -> list[date]:
    """The synthetic market's raw bars of ``first..last``, and (unless ``ledger`` is false) its
    corporate actions of the same range in the ledger."""
    sessions = XNYS.sessions(first, last)
    vendor = SyntheticVendor(lambda _s: XNYS)
    ingest_sessions(
        symbol=symbol, interval=interval, calendar=XNYS, sessions=sessions, vendors=[vendor], warehouse=wh, run_id="r"
    )
    if ledger:
        refresh_ledger(wh, [vendor], [symbol], first, last, now=NOW)
    return sessions


def span(sessions: list[date]) -> tuple[int, int]:
    return XNYS.bounds(sessions[0]).open_ms, XNYS.bounds(sessions[-1]).close_ms


@pytest.mark.parametrize(
    ("symbol", "interval", "first", "last", "adjust", "kinds"),
    [
        ("JPM", "1d", date(2024, 9, 3), date(2025, 6, 30), "all", {"split", "dividend"}),
        ("JPM", "1d", date(2024, 9, 3), date(2025, 6, 30), "split", {"split"}),
        ("NVDA", "1m", date(2024, 6, 5), date(2024, 6, 11), "split", {"split"}),
    ],
)
def test_adjusting_back_reproduces_every_stored_raw_bar(
    wh: Warehouse, symbol: str, interval: Interval, first: date, last: date, adjust: Adjust, kinds: set[str]
) -> None:
    if interval != "1d":
        load(wh, symbol, "1d", first - timedelta(days=10), last)  # the reference closes of dividends
    sessions = load(wh, symbol, interval, first, last)
    start, end = span(sessions)
    raw = wh.read_bars(symbol, interval, start, end)
    answer = read_adjusted(wh, XNYS, symbol, interval, start, end, adjust)
    assert {a.action.kind for a in answer.applied} == kinds
    back = unadjust(answer.bars)
    assert back["ts"].tolist() == raw["ts"].tolist()
    for c in (*PRICE_COLUMNS, "volume"):
        np.testing.assert_allclose(back[c].to_numpy(), raw[c].to_numpy(), rtol=1e-12, err_msg=c)
    # the rounded answer the CLI and API stream proves the same, to its 10 decimals
    _, chunks = adjusted_stream(
        wh, XNYS, symbol, interval, iter_bars(wh, symbol, interval, start, end, 97), adjust, sessions
    )
    streamed = pd.concat(list(chunks), ignore_index=True)
    for c in (*PRICE_COLUMNS, "volume"):
        np.testing.assert_allclose(unadjust(streamed)[c].to_numpy(), raw[c].to_numpy(), rtol=1e-9, err_msg=c)
    # each bar's factor is the product of the applied actions with its session < ex-date <= the basis
    days = [d.astype(object) for d in session_days(raw["ts"].to_numpy(), XNYS.tz)]
    want = [math.prod(a.price_factor for a in answer.applied if d < a.action.ex_date) for d in days]
    np.testing.assert_allclose(answer.bars["price_factor"].to_numpy(), want, rtol=1e-12)


def test_adjusted_prices_are_continuous_where_raw_ones_jump(wh: Warehouse) -> None:
    sessions = load(wh, "NVDA", "1d", date(2024, 5, 1), date(2024, 7, 31))
    start, end = span(sessions)
    raw = wh.read_bars("NVDA", "1d", start, end)
    adjusted = read_adjusted(wh, XNYS, "NVDA", "1d", start, end, "split").bars
    i = sessions.index(NVDA_SPLIT)
    assert raw["close"][i] / raw["close"][i - 1] == pytest.approx(0.1, rel=0.1)  # raw: -90 % overnight
    assert adjusted["close"][i] / adjusted["close"][i - 1] == pytest.approx(1.0, abs=0.1)
    assert adjusted["volume"][i - 1] == pytest.approx(raw["volume"][i - 1] * 10)
    # as of a session before the split, the basis is the old one: later bars are scaled up instead
    as_of = read_adjusted(wh, XNYS, "NVDA", "1d", start, end, "split", as_of=date(2024, 6, 7)).bars
    np.testing.assert_allclose(as_of["close"][:i], raw["close"][:i])
    np.testing.assert_allclose(as_of["close"][i:], raw["close"][i:] * 10)


D0 = date(2024, 1, 1)


def _split(i: int, day: int, shares: float) -> Applied:
    return Applied(
        CorporateAction("X", "split", D0 + timedelta(days=day), "v", str(i), 1.0, shares), 1 / shares, shares
    )


def _expected(actions: list[tuple[int, float]], t: int, b: int) -> float:
    if t <= b:
        return math.prod(1 / r for e, r in actions if t < e <= b)
    return 1 / math.prod(1 / r for e, r in actions if b < e <= t)


@settings(max_examples=200, deadline=None)
@given(
    actions=st.lists(st.tuples(st.integers(0, 60), st.floats(0.05, 20.0)), max_size=8),
    days=st.lists(st.integers(-5, 65), min_size=1, max_size=30),
    b1=st.integers(-5, 65),
    b2=st.integers(-5, 65),
)
def test_cumulative_factors_are_products_and_compose(
    actions: list[tuple[int, float]], days: list[int], b1: int, b2: int
) -> None:
    applied = [_split(i, e, r) for i, (e, r) in enumerate(actions)]
    at = np.array([np.datetime64(D0 + timedelta(days=d), "D") for d in days])
    basis1, basis2 = D0 + timedelta(days=b1), D0 + timedelta(days=b2)
    price1, volume1 = cumulative(applied, at, basis1)
    price2, _ = cumulative(applied, at, basis2)
    between, _ = cumulative(applied, np.array([np.datetime64(basis1, "D")]), basis2)
    for k, t in enumerate(days):
        assert price1[k] == pytest.approx(_expected(actions, t, b1), rel=1e-9)
        assert price1[k] * volume1[k] == pytest.approx(1.0, rel=1e-9)  # a split keeps value traded
        assert price2[k] == pytest.approx(price1[k] * between[0], rel=1e-9)  # F(t, b2) = F(t, b1) F(b1, b2)


def _independent_adjusted_closes(
    wh: Warehouse, symbol: str, raw: pd.DataFrame, days: list[date], s: date
) -> np.ndarray:
    """Closes of ``days`` (<= s) in s's basis, from the ledger and raw closes, without the library's factors."""
    closes = raw["close"].to_numpy(np.float64)
    out = closes.copy()
    for a in wh.actions_in_force(symbol):
        if not a.ex_date <= s:
            continue
        if a.kind == "split":
            f = a.ratio_from / a.ratio_to
        else:
            prev = closes[max(i for i, d in enumerate(days) if d < a.ex_date)]
            f = 1 - (a.cash or 0.0) / prev
        out[[i for i, d in enumerate(days) if d < a.ex_date]] *= f
    return out


@pytest.mark.parametrize(("symbol", "around"), [("NVDA", NVDA_SPLIT), ("JPM", JPM_REVERSE)])
def test_sma_200_is_point_in_time_and_equals_talib_on_independently_adjusted_closes(
    wh: Warehouse, symbol: str, around: date
) -> None:
    sessions = load(wh, symbol, "1d", around - timedelta(days=400), around + timedelta(days=120))
    derive_indicators(symbol=symbol, interval="1d", calendar=XNYS, sessions=sessions, warehouse=wh, now=NOW)
    start, end = span(sessions)
    raw = wh.read_bars(symbol, "1d", start, end)
    stored = wh.read_indicators(symbol, "1d", start, end)
    assert len(stored) == len(raw) == len(sessions)
    for i in range(199, len(sessions), 3):
        closes = _independent_adjusted_closes(wh, symbol, raw, sessions, sessions[i])
        want = talib.SMA(closes[i - 199 : i + 1], 200)[-1]
        assert stored["sma_200"][i] == pytest.approx(want, rel=1e-9), sessions[i]
    # no step at the action: the average follows the close through it, in each session's basis
    i = sessions.index(around)
    ratio = (stored["sma_200"] / raw["close"]).to_numpy()
    assert ratio[i] == pytest.approx(ratio[i - 1], rel=0.05)


def test_a_later_action_never_changes_an_indicator_before_its_ex_date(wh: Warehouse) -> None:
    sessions = load(wh, "NVDA", "1d", date(2023, 3, 1), date(2024, 8, 30), ledger=False)
    derive_indicators(symbol="NVDA", interval="1d", calendar=XNYS, sessions=sessions, warehouse=wh, now=NOW)
    start, end = span(sessions)
    before = wh.read_indicators("NVDA", "1d", start, end)
    refresh_ledger(wh, [SyntheticVendor(lambda _s: XNYS)], ["NVDA"], sessions[0], sessions[-1], now=NOW)
    derive_indicators(symbol="NVDA", interval="1d", calendar=XNYS, sessions=sessions, warehouse=wh, now=NOW)
    after = wh.read_indicators("NVDA", "1d", start, end)
    i = sessions.index(NVDA_SPLIT)
    cols = ["sma_200", "ema_26", "atr_14", "rsi_14", "ret_252"]
    np.testing.assert_allclose(after[cols][:i].to_numpy(), before[cols][:i].to_numpy(), rtol=1e-12)
    # from the ex-date on, the ledger's split removes the raw drop: the 1-day return is no longer -90 %
    assert before["ret_1"][i] == pytest.approx(-0.9, abs=0.05) and abs(after["ret_1"][i]) < 0.1


def test_jumps_explained_passes_on_the_default_synthetic_history(wh: Warehouse) -> None:
    for symbol in ("NVDA", "TSLA", "JPM", "AAPL"):
        sessions = load(wh, symbol, "1d", date(2022, 1, 3), date(2025, 12, 31))
        outcomes = jumps_explained(wh, XNYS, symbol, sessions)
        failed = {d: o.description for d, o in outcomes.items() if not o.passed}
        assert failed == {}, symbol
        assert len(outcomes) == len(sessions)
    split_day = jumps_explained(wh, XNYS, "NVDA", [NVDA_SPLIT])[NVDA_SPLIT.isoformat()]
    assert "x10 split applied" in split_day.description


@pytest.mark.parametrize(
    ("symbol", "ex", "named"),
    [("NVDA", NVDA_SPLIT, "matches a 10-for-1 split"), ("JPM", JPM_REVERSE, "matches a 1-for-5 reverse split")],
)
def test_jumps_explained_names_the_split_the_ledger_lacks(wh: Warehouse, symbol: str, ex: date, named: str) -> None:
    sessions = load(wh, symbol, "1d", ex - timedelta(days=20), ex + timedelta(days=20), ledger=False)
    outcomes = jumps_explained(wh, XNYS, symbol, sessions)
    failed = {d: o.description for d, o in outcomes.items() if not o.passed}
    assert (
        list(failed) == [ex.isoformat()]
        and named in failed[ex.isoformat()]
        and "ledger lacks" in failed[ex.isoformat()]
    )


def test_jumps_explained_says_bars_look_already_adjusted(wh: Warehouse) -> None:
    sessions = load(wh, "AAPL", "1d", date(2024, 3, 1), date(2024, 4, 30), ledger=False)
    phantom = CorporateAction("AAPL", "split", date(2024, 4, 1), "polygon", "p-1", 1.0, 4.0)
    wh.record_actions("polygon", ["AAPL"], sessions[0], sessions[-1], [phantom], NOW)
    outcome = jumps_explained(wh, XNYS, "AAPL", [date(2024, 4, 1)])["2024-04-01"]
    assert not outcome.passed and "bars look already adjusted" in outcome.description
    assert outcome.metadata["ledger_split_ratio"] == 4.0
