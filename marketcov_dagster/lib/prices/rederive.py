"""What a ledger change makes stale: the symbol's point-in-time indicators from the action's
ex-date on, and nothing before it (an indicator at session s uses only actions with ex-date <= s).

Candles and weekly bars are raw aggregates of raw bars: no ledger change touches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.warehouse import Warehouse

LAST_KEY = "9999-12-31"


@dataclass(frozen=True)
class Rederive:
    asset_key: str  # indicators/<interval>/<SYMBOL>
    calendar: str
    interval: str
    first: date  # the first written session on or after the earliest changed ex-date
    last: date  # the last written session
    ex_date: date  # the earliest ex-date among the symbol's changed actions
    actions: int  # how many of the symbol's statements changed


def plan_rederive(
    warehouse: Warehouse, specs: Sequence[AssetSpecification], since: datetime
) -> tuple[list[Rederive], datetime]:
    """The indicator ranges to derive again for the ledger changes after ``since``, and the time
    to watch from next (the newest change seen, or ``since`` when there was none)."""
    changes = warehouse.ledger_changes_since(since)
    if not changes:
        return [], since
    earliest: dict[str, date] = {}
    counts: dict[str, int] = {}
    for symbol, ex_date, _when in changes:
        earliest[symbol] = min(ex_date, earliest.get(symbol, ex_date))
        counts[symbol] = counts.get(symbol, 0) + 1
    out: list[Rederive] = []
    for spec in specs:
        ex = earliest.get(spec.symbol)
        if not spec.indicators or ex is None:
            continue
        written = sorted(warehouse.written_sessions(spec.symbol, spec.interval, ex.isoformat(), LAST_KEY))
        if written:
            first, last = date.fromisoformat(written[0]), date.fromisoformat(written[-1])
            out.append(Rederive(spec.key_str, spec.calendar, spec.interval, first, last, ex, counts[spec.symbol]))
    return out, max(when for _s, _e, when in changes)
