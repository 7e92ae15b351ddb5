"""The corporate actions of the offline market, and what they do to its raw prices.

The synthetic vendor's economic price path is smooth; its raw (as traded) prices carry every
action up to each bar: a 10-for-1 split divides later prices by 10, a dividend of a fraction y of
the previous close lowers later prices by (1 − y). Raw prices therefore depend only on actions
already past, never on the clock, and back-adjusting them with the ledger gives a continuous series.

The default history holds NVDA's real 10-for-1 split (ex 2024-06-10) and TSLA's real 3-for-1 split
(ex 2022-08-25), a fictional 1-for-5 reverse split of JPM (ex 2025-03-17, to show one offline),
and quarterly cash dividends of AAPL, MSFT, JPM and SPY (ex on the first session on or after the
8th of their months, since 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from marketcov_dagster.lib.calendars import TradingCalendar

SPLITS: dict[str, tuple[tuple[date, float, float], ...]] = {  # symbol -> (ex-date, from, to)
    "NVDA": ((date(2024, 6, 10), 1.0, 10.0),),
    "TSLA": ((date(2022, 8, 25), 1.0, 3.0),),
    "JPM": ((date(2025, 3, 17), 5.0, 1.0),),
}
# symbol -> (first month of its quarterly cycle, dividend as a fraction of the previous close)
DIVIDENDS: dict[str, tuple[int, float]] = {
    "AAPL": (2, 0.0025),
    "MSFT": (2, 0.0030),
    "JPM": (1, 0.0060),
    "SPY": (3, 0.0035),
}
DIVIDENDS_SINCE = 2016
ANNOUNCED_DAYS = 30  # the vendor states an action this long before its ex-date


@dataclass(frozen=True)
class SyntheticAction:
    ex_date: date
    ex_open_ms: int
    kind: str  # split | dividend
    ratio_from: float = 1.0
    ratio_to: float = 1.0
    dividend_yield: float = 0.0

    @property
    def price_step(self) -> float:
        """What raw prices from the ex-date on are multiplied by, relative to before."""
        return self.ratio_from / self.ratio_to if self.kind == "split" else 1.0 - self.dividend_yield

    @property
    def volume_step(self) -> float:
        return self.ratio_to / self.ratio_from if self.kind == "split" else 1.0


def _first_session_from(cal: TradingCalendar, day: date) -> date | None:
    found = cal.sessions(day, day + timedelta(days=10))
    return found[0] if found else None


@lru_cache(maxsize=4096)
def synthetic_actions(symbol: str, cal: TradingCalendar) -> tuple[SyntheticAction, ...]:
    """Every action of ``symbol`` the calendar has sessions for, in ex-date order."""
    out: list[SyntheticAction] = []
    if cal.always_open:
        return ()
    for ex, ratio_from, ratio_to in SPLITS.get(symbol, ()):
        if cal.first_session <= ex <= cal.last_session and cal.is_session(ex):
            out.append(SyntheticAction(ex, cal.bounds(ex).open_ms, "split", ratio_from, ratio_to))
    if symbol in DIVIDENDS:
        first_month, y = DIVIDENDS[symbol]
        for year in range(DIVIDENDS_SINCE, cal.last_session.year + 1):
            for month in range(first_month, 13, 3):
                ex_day = _first_session_from(cal, date(year, month, 8))
                if ex_day is not None and ex_day >= cal.first_session:
                    out.append(SyntheticAction(ex_day, cal.bounds(ex_day).open_ms, "dividend", dividend_yield=y))
    return tuple(sorted(out, key=lambda a: (a.ex_date, a.kind)))


def raw_multipliers(actions: tuple[SyntheticAction, ...], ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Price and volume multipliers of bars opening at ``ts``: the product of the steps of every
    action whose ex-date session opened at or before the bar."""
    n = len(ts)
    if not actions:
        return np.ones(n), np.ones(n)
    opens = np.array([a.ex_open_ms for a in actions], dtype=np.int64)
    price = np.concatenate([[1.0], np.cumprod([a.price_step for a in actions])])
    volume = np.concatenate([[1.0], np.cumprod([a.volume_step for a in actions])])
    idx = np.searchsorted(opens, ts, side="right")
    return price[idx], volume[idx]
