"""``jumps_explained``: raw daily prices may only jump where the ledger says they should.

Each session's open and close are compared with the previous session's close, after undoing the
splits the ledger has on that session. What is left (the residual move) fails the check when it
matches a common split ratio within ``RATIO_TOLERANCE`` (a split the ledger lacks, named), or
exceeds ``BIG_MOVE`` either way; and a split in the ledger whose session shows no matching move
fails as "bars look already adjusted" (a vendor serving adjusted prices, or a ledger entry that
should not be there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

import numpy as np

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.prices.adjust import session_days
from marketcov_dagster.lib.verify import CheckOutcome
from marketcov_dagster.lib.warehouse import Warehouse

JUMPS_EXPLAINED = "jumps_explained"
SPLIT_RATIOS = (2.0, 3.0, 1.5, 4.0, 5.0, 10.0, 20.0)  # n-for-1 (1.5: 3-for-2) and, inverted, their reverses
RATIO_TOLERANCE = 0.03
BIG_MOVE = 0.40


def _ratio_name(q: float, forward: bool) -> str:
    n = "3-for-2" if q == 1.5 else f"{q:g}-for-1"
    if forward:
        return f"a {n} split"
    return "a 2-for-3 reverse split" if q == 1.5 else f"a 1-for-{q:g} reverse split"


def likely_split(residual: float) -> str | None:
    """The common split a price ratio (new / old) looks like, within the tolerance."""
    for q in SPLIT_RATIOS:
        if abs(residual * q - 1.0) <= RATIO_TOLERANCE:
            return _ratio_name(q, True)
        if abs(residual / q - 1.0) <= RATIO_TOLERANCE:
            return _ratio_name(q, False)
    return None


def judge_move(residual: float, ledger_ratio: float) -> str | None:
    """Why a move is unexplained (None when it is explained). ``residual``: new / old price after
    undoing the ledger's split of ``ledger_ratio`` shares after per share before (1: none)."""
    raw_move = residual / ledger_ratio
    if ledger_ratio != 1.0 and abs(math.log(raw_move)) < abs(math.log(residual)):  # nearer no move than the split
        return f"the ledger's split (x{ledger_ratio:g} shares) shows no move in raw prices: bars look already adjusted"
    split = likely_split(residual)
    if split is not None:
        return f"a move of x{residual:.4g} matches {split}, which the ledger lacks"
    if abs(residual - 1.0) > BIG_MOVE:
        return f"a move of {100 * (residual - 1):+.1f}% with no action in the ledger"
    return None


def jumps_explained(
    warehouse: Warehouse, calendar: TradingCalendar, symbol: str, days: Sequence[date]
) -> dict[str, CheckOutcome]:
    """The check's outcome for each of ``days`` (written daily partitions of ``symbol``)."""
    if not days:
        return {}
    first, last = min(days), max(days)
    before = calendar.sessions(max(calendar.first_session, date.fromordinal(first.toordinal() - 14)), first)
    start = calendar.bounds(before[0]).open_ms
    bars = warehouse.read_bars(symbol, "1d", start, calendar.bounds(last).close_ms)
    ratio: dict[date, float] = {}
    for a in warehouse.actions_in_force(symbol):
        if a.kind == "split":
            ratio[a.ex_date] = ratio.get(a.ex_date, 1.0) * a.split_ratio
    sessions = [d.astype(object) for d in session_days(bars["ts"].to_numpy(), calendar.tz)]
    index = {d: i for i, d in enumerate(sessions)}
    opens, closes = bars["open"].to_numpy(np.float64), bars["close"].to_numpy(np.float64)
    out: dict[str, CheckOutcome] = {}
    for d in days:
        i = index.get(d)
        if i is None or i == 0:
            out[d.isoformat()] = CheckOutcome(JUMPS_EXPLAINED, True, "no previous close to compare with", {})
            continue
        r = ratio.get(d, 1.0)
        prev = closes[i - 1]
        problems = []
        meta: dict[str, object] = {"previous_close": float(prev), "ledger_split_ratio": r}
        for what, price in (("open", opens[i]), ("close", closes[i])):
            residual = float(price / prev * r)
            meta[f"{what}_move"] = residual
            why = judge_move(residual, r)
            if why:
                problems.append(f"{what} {price:g} vs previous close {prev:g}: {why}")
        if problems:
            out[d.isoformat()] = CheckOutcome(JUMPS_EXPLAINED, False, "; ".join(problems), meta)
        else:
            said = f" (the ledger's x{r:g} split applied)" if r != 1.0 else ""
            out[d.isoformat()] = CheckOutcome(JUMPS_EXPLAINED, True, f"no unexplained jump{said}", meta)
    return out
