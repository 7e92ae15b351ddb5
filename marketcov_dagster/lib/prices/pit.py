"""Point-in-time adjusted inputs for indicators: the value at session s uses prices adjusted for
every action with ex-date <= s, in s's price basis (what a trader knew at that close).

Computed in one pass: the series is adjusted into the basis of its last session, the indicators
computed once, and each price-scaled value brought back into its own session's basis by dividing
by that bar's factor. Exact because F(t, last) = F(t, s) * F(s, last) for t <= s, and the
price-scaled indicators (averages, ATR, MACD) are linear in the price scale; RSI, ADX and returns
are scale-free and need nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np

from marketcov_dagster.lib.prices.adjust import session_days
from marketcov_dagster.lib.prices.factors import Applied, cumulative

PRICE_SCALED = ("sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "atr_14", "macd", "macd_signal", "macd_hist")


def adjusted_inputs(
    ts: np.ndarray, prices: Sequence[np.ndarray], applied: Sequence[Applied], tz: ZoneInfo | str
) -> tuple[list[np.ndarray], np.ndarray]:
    """``prices`` (raw, one array per column) in the basis of the last bar's session, and each
    bar's factor into it (divide a price-scaled value at a bar by it to return to its basis)."""
    if not applied or len(ts) == 0:
        return [np.asarray(p, dtype=np.float64) for p in prices], np.ones(len(ts))
    days = session_days(ts, tz)
    factor, _ = cumulative(applied, days, days[-1].astype(object))
    return [np.asarray(p, dtype=np.float64) * factor for p in prices], factor


def to_own_basis(values: np.ndarray, columns: Sequence[str], factor: np.ndarray) -> np.ndarray:
    """Price-scaled indicator columns of ``values`` divided by each row's factor."""
    out = values.copy()
    for j, name in enumerate(columns):
        if name in PRICE_SCALED:
            out[:, j] = values[:, j] / factor
    return out
