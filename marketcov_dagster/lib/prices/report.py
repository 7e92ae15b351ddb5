"""A symbol's corporate actions as people and programs read them (``marketcov actions``,
``GET /api/actions/{symbol}``): every ledger entry (withdrawn ones marked), and the cumulative
split and dividend factors in force over each session range, into the basis of ``basis``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.prices.factors import Applied, Skipped
from marketcov_dagster.lib.warehouse import LedgerEntry

RANGE_COLUMNS = ("from", "to", "split_factor", "dividend_factor", "price_factor", "volume_factor")


def _session_before(calendar: TradingCalendar, day: date) -> date | None:
    found = calendar.sessions(max(calendar.first_session, day - timedelta(days=14)), day - timedelta(days=1))
    return found[-1] if found else None


def factor_ranges(calendar: TradingCalendar, applied: Sequence[Applied], basis: date) -> list[dict[str, Any]]:
    """One row per run of sessions between ex-dates: the factors a bar there is multiplied by to
    reach ``basis``'s prices (``from`` None: since the first bar)."""
    kept = sorted((a for a in applied if a.action.ex_date <= basis), key=lambda a: a.action.ex_date)
    rows: list[dict[str, Any]] = []
    start: date | None = None
    for ex in sorted({a.action.ex_date for a in kept}):
        later = [a for a in kept if a.action.ex_date >= ex]
        split = dividend = volume = 1.0
        for a in later:
            if a.action.kind == "split":
                split *= a.price_factor
            else:
                dividend *= a.price_factor
            volume *= a.volume_factor
        rows.append(
            {
                "from": start.isoformat() if start else None,
                "to": (_session_before(calendar, ex) or ex).isoformat(),
                "split_factor": split,
                "dividend_factor": dividend,
                "price_factor": split * dividend,
                "volume_factor": volume,
            }
        )
        start = ex
    rows.append(
        {
            "from": start.isoformat() if start else None,
            "to": basis.isoformat(),
            "split_factor": 1.0,
            "dividend_factor": 1.0,
            "price_factor": 1.0,
            "volume_factor": 1.0,
        }
    )
    return rows


def actions_report(
    symbol: str,
    calendar: TradingCalendar,
    entries: Sequence[LedgerEntry],
    applied: Sequence[Applied],
    skipped: Sequence[Skipped],
    basis: date,
) -> dict[str, Any]:
    factor_of = {(a.action.vendor, a.action.vendor_id): a for a in applied}
    actions = []
    for e in entries:
        a = factor_of.get((e.action.vendor, e.action.vendor_id))
        actions.append(
            {
                **e.as_dict(),
                "in_force": e.withdrawn_at is None and a is not None,
                "price_factor": a.price_factor if a else None,
                "volume_factor": a.volume_factor if a else None,
                "reference_close": a.reference_close if a else None,
            }
        )
    return {
        "symbol": symbol,
        "calendar": calendar.name,
        "basis": basis.isoformat(),
        "actions": actions,
        "skipped": [{**s.action.as_dict(), "reason": s.reason} for s in skipped],
        "ranges": factor_ranges(calendar, applied, basis),
    }


ACTION_COLUMNS = (
    "ex_date",
    "kind",
    "description",
    "cash",
    "currency",
    "price_factor",
    "vendor",
    "vendor_id",
    "first_seen",
    "last_changed",
    "withdrawn_at",
)
