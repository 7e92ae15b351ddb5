"""Technical indicators from stored OHLCV bars, computed with TA-Lib.

SMA 20/50/200, EMA 12/26, RSI 14, ATR 14, ADX 14, MACD 12/26/9 and simple returns over 1, 5,
20, 60 and 252 bars, one row per stored bar. A value needs history: where a bar has fewer bars
before it than an indicator's lookback, the value is NULL (the partition says it is warming up)
rather than a wrong number.

Incremental = full: TA-Lib's recursive averages (EMA, RSI, ATR, ADX, MACD) depend on where the
series starts, but forget it geometrically. A run reads ``WARMUP_BARS`` stored bars before its
first session (or all there are), and the ``matches_full_recomputation`` check recomputes from
the first stored bar: the two agree to ``REL_TOLERANCE`` (with 400 bars of warm-up the period-26
EMA's start weighs ``(25/27)**400`` ~ 1e-13).

Point in time: the inputs are the raw bars adjusted through the corporate-actions ledger so that
the value at session s is in s's price basis, adjusted for every action up to s (``lib.prices.pit``):
no step at a split, and a later action never changes a value before its ex-date.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import talib

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.prices.ledger import adjustments
from marketcov_dagster.lib.prices.pit import adjusted_inputs, to_own_basis
from marketcov_dagster.lib.resample import require_source
from marketcov_dagster.lib.sources import require_verified
from marketcov_dagster.lib.verify import CheckOutcome
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster.lib.warehouse.schema import INDICATOR_COLUMNS

WARMUP_BARS = 400
REL_TOLERANCE = 1e-9
MATCHES_FULL_RECOMPUTATION = "matches_full_recomputation"
COVERS_SOURCE_BARS = "covers_source_bars"
INDICATOR_CHECKS = (COVERS_SOURCE_BARS, MATCHES_FULL_RECOMPUTATION)
RETURN_PERIODS = (1, 5, 20, 60, 252)
_READ = ("ts", "high", "low", "close")  # the bar columns the indicators need


def compute_arrays(close: np.ndarray, high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The indicators of a series of bars (oldest first): a float array with one row per bar and
    one column per ``INDICATOR_COLUMNS`` entry, NaN while warming up."""
    c, h, lo = (np.ascontiguousarray(a, dtype=np.float64) for a in (close, high, low))
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    columns: dict[str, np.ndarray] = {
        "sma_20": talib.SMA(c, 20),
        "sma_50": talib.SMA(c, 50),
        "sma_200": talib.SMA(c, 200),
        "ema_12": talib.EMA(c, 12),
        "ema_26": talib.EMA(c, 26),
        "rsi_14": talib.RSI(c, 14),
        "atr_14": talib.ATR(h, lo, c, 14),
        "adx_14": talib.ADX(h, lo, c, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
    }
    for n in RETURN_PERIODS:
        r = np.full(len(c), np.nan)
        if len(c) > n:
            r[n:] = c[n:] / c[:-n] - 1.0
        columns[f"ret_{n}"] = r
    out = np.empty((len(c), len(INDICATOR_COLUMNS)))
    for j, name in enumerate(INDICATOR_COLUMNS):
        out[:, j] = columns[name]
    return out


def point_in_time(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, interval: Interval, arrays: np.ndarray
) -> np.ndarray:
    """The indicators of bars given as rows of (ts, high, low, close), point in time: through the
    ledger's splits and dividends, each value in its own session's price basis."""
    applied, _ = adjustments(warehouse, calendar, symbol, interval, "all")
    (high, low, close), factor = adjusted_inputs(
        arrays[:, 0].astype(np.int64), [arrays[:, 1], arrays[:, 2], arrays[:, 3]], applied, calendar.tz
    )
    return to_own_basis(compute_arrays(close, high, low), INDICATOR_COLUMNS, factor)


def compute(
    bars: pd.DataFrame,
    warehouse: Warehouse | None = None,
    calendar: TradingCalendar | None = None,
    symbol: str = "",
    interval: Interval = "1d",
) -> pd.DataFrame:
    """The indicators of each bar of a canonical frame (sorted by ``ts``): ``ts`` and one float
    column per indicator (NaN while warming up); point in time when the warehouse is given."""
    if warehouse is not None and calendar is not None:
        values = point_in_time(warehouse, calendar, symbol, interval, bars[list(_READ)].to_numpy(dtype=np.float64))
    else:
        values = compute_arrays(bars["close"].to_numpy(), bars["high"].to_numpy(), bars["low"].to_numpy())
    df = pd.DataFrame(values, columns=list(INDICATOR_COLUMNS))
    df.insert(0, "ts", bars["ts"].to_numpy(dtype=np.int64))
    return df


class IndicatorResult(NamedTuple):
    session: date
    rows: int
    warming_up: tuple[str, ...]  # indicators with no value yet on some bar of the session

    def metadata(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "warming_up": bool(self.warming_up),
            "warming_up_indicators": list(self.warming_up),
        }


def _in(ts: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    return (ts >= window[0]) & (ts < window[1])


_BITS = 1 << np.arange(len(INDICATOR_COLUMNS), dtype=np.int64)
_NAMED_BITS = list(zip(INDICATOR_COLUMNS, _BITS.tolist(), strict=True))


def _warming_up(values: np.ndarray, edges: np.ndarray) -> list[tuple[str, ...]]:
    """Per session (its rows of ``values`` from ``edges[i]`` to ``edges[i + 1]``), the indicators
    with a NaN there. Sessions share a handful of patterns (none, or the first sessions' longest
    lookbacks): each is one bit mask, named once."""
    nans = np.concatenate([np.zeros((1, values.shape[1]), dtype=np.int64), np.cumsum(np.isnan(values), axis=0)])
    masks = (((nans[edges[1:]] - nans[edges[:-1]]) > 0) @ _BITS).tolist()
    named = {m: tuple(c for c, bit in _NAMED_BITS if m & bit) for m in set(masks)}
    return [named[m] for m in masks]


def derive_indicators(
    *,
    symbol: str,
    interval: Interval,
    calendar: TradingCalendar,
    sessions: Sequence[date],
    warehouse: Warehouse,
    now: datetime | None = None,
) -> list[IndicatorResult]:
    """Compute and store the indicators of the sessions' bars, reading ``WARMUP_BARS`` bars of
    history before them. Raises before writing anything when a session has not opened or its
    bars were never written."""
    days = sorted(set(sessions))
    now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
    require_source(warehouse, calendar, symbol, interval, days, now_ms, f"{symbol} {interval} indicators")
    require_verified(warehouse, symbol, interval, calendar.session_keys(days), f"{symbol} {interval} indicators")
    starts, ends = calendar.partition_window_arrays(days, interval)
    contiguous = calendar.sessions(days[0], days[-1]) == days  # a range: one span to replace
    spans = [(int(starts[0]), int(ends[-1]))] if contiguous else list(zip(starts.tolist(), ends.tolist(), strict=True))
    bars = warehouse.read_bar_arrays(symbol, interval, int(starts[0]), int(ends[-1]), _READ, history=WARMUP_BARS)
    ts = bars[:, 0].astype(np.int64)
    values = point_in_time(warehouse, calendar, symbol, interval, bars)
    pos = np.searchsorted(starts, ts, side="right") - 1
    keep = (pos >= 0) & (ts < ends[np.clip(pos, 0, None)])  # the warm-up bars only feed the averages
    # per session (kept bars are in session order): its rows, and which columns have a NaN there
    edges = np.searchsorted(pos[keep], np.arange(len(days) + 1))
    rows = np.diff(edges).tolist()
    warming_up = _warming_up(values[keep], edges)
    results = list(map(IndicatorResult._make, zip(days, rows, warming_up, strict=True)))  # years of sessions
    warehouse.write_indicators(symbol, interval, spans, ts[keep], values[keep])
    return results


def verify_indicators(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, interval: Interval, sessions: Sequence[date]
) -> dict[str, list[CheckOutcome]]:
    """Per session whose bars were written: one stored indicator row per bar, and the stored values
    equal (to ``REL_TOLERANCE``, NULLs in the same places) a recomputation from the first stored bar."""
    days = sorted(set(sessions))
    if not days:
        return {}
    written = warehouse.written_sessions(symbol, interval, days[0].isoformat(), days[-1].isoformat())
    days = [d for d in days if d.isoformat() in written]
    if not days:
        return {}
    windows = calendar.partition_windows_ms(days, interval)
    full = compute(
        warehouse.read_bars(symbol, interval, -(2**62), windows[-1][1]), warehouse, calendar, symbol, interval
    )
    stored = warehouse.read_indicators(symbol, interval, windows[0][0], windows[-1][1])
    fts, sts = full["ts"].to_numpy(), stored["ts"].to_numpy()
    out: dict[str, list[CheckOutcome]] = {}
    for d, w in zip(days, windows, strict=True):
        want, have = full[_in(fts, w)].reset_index(drop=True), stored[_in(sts, w)].reset_index(drop=True)
        out[d.isoformat()] = [_covers(want, have), _matches(want, have)]
    return out


def _covers(want: pd.DataFrame, have: pd.DataFrame) -> CheckOutcome:
    same = want["ts"].tolist() == have["ts"].tolist()
    meta = {"bars": len(want), "indicator_rows": len(have)}
    if same:
        return CheckOutcome(COVERS_SOURCE_BARS, True, f"one indicator row for each of the {len(want)} bars", meta)
    return CheckOutcome(
        COVERS_SOURCE_BARS, False, f"{len(have)} indicator rows for {len(want)} stored bars: re-derive", meta
    )


def _matches(want: pd.DataFrame, have: pd.DataFrame) -> CheckOutcome:
    if want["ts"].tolist() != have["ts"].tolist():
        return CheckOutcome(MATCHES_FULL_RECOMPUTATION, False, "rows differ from the stored bars: re-derive", {})
    differ = []
    worst = 0.0
    for c in INDICATOR_COLUMNS:
        a, b = want[c].to_numpy(), have[c].to_numpy()
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            differ.append(c)
            continue
        ok = ~np.isnan(a)
        if ok.any():
            # relative to the column's scale: a MACD histogram crossing zero is not a 100 % error
            rel = np.abs(a[ok] - b[ok]) / max(float(np.abs(a[ok]).max()), 1e-12)
            worst = max(worst, float(rel.max()))
            if (rel > REL_TOLERANCE).any():
                differ.append(c)
    meta: dict[str, Any] = {"max_relative_difference": worst, "differing": differ}
    warming = [c for c in INDICATOR_COLUMNS if have[c].isna().any()]
    note = f"; warming up: {', '.join(warming)}" if warming else ""
    if not differ:
        return CheckOutcome(
            MATCHES_FULL_RECOMPUTATION, True, f"equal to a full recomputation (max rel. diff {worst:.1e}){note}", meta
        )
    return CheckOutcome(
        MATCHES_FULL_RECOMPUTATION,
        False,
        f"{', '.join(differ)} differ from a full recomputation (max rel. diff {worst:.1e}): re-derive",
        meta,
    )
