"""The ledger at work: refreshing it from vendors, and reading adjusted bars through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

import numpy as np
import pandas as pd

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.prices.actions import CorporateAction, Disagreement, disagreements, within
from marketcov_dagster.lib.prices.adjust import Adjusted, adjust_bars, adjusted_chunks, session_days
from marketcov_dagster.lib.prices.factors import Adjust, Applied, Skipped, applicable
from marketcov_dagster.lib.sources import unverified
from marketcov_dagster.lib.vendors.base import VendorError
from marketcov_dagster.lib.warehouse import LedgerChanges, Warehouse


class ActionSource(Protocol):
    name: str

    def fetch_actions(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]: ...


class LedgerUnavailable(RuntimeError):
    """No vendor could state the corporate actions asked for."""


@dataclass
class LedgerRefresh:
    first: date
    last: date
    changes: dict[str, LedgerChanges] = field(default_factory=dict)  # per vendor that answered
    failed: dict[str, str] = field(default_factory=dict)  # vendor -> its error
    disagreements: list[Disagreement] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        total = {"added": 0, "changed": 0, "withdrawn": 0, "restored": 0, "unchanged": 0}
        for c in self.changes.values():
            total["added"] += len(c.added)
            total["changed"] += len(c.changed)
            total["withdrawn"] += len(c.withdrawn)
            total["restored"] += len(c.restored)
            total["unchanged"] += c.unchanged
        return total

    def touched(self) -> list[CorporateAction]:
        return [a for c in self.changes.values() for a in c.touched]


def refresh_ledger(
    warehouse: Warehouse,
    vendors: Sequence[ActionSource],
    symbols: Sequence[str],
    first: date,
    last: date,
    now: datetime | None = None,
) -> LedgerRefresh:
    """Ask every vendor for the actions of ``symbols`` with ex-dates in ``first..last`` and merge
    each answer into the ledger; vendors that answered and disagree are listed. Raises
    ``LedgerUnavailable`` (writing nothing) when none answered."""
    out = LedgerRefresh(first, last)
    answers: dict[str, list[CorporateAction]] = {}
    for vendor in vendors:
        try:
            answers[vendor.name] = within(vendor.fetch_actions(list(symbols), first, last), symbols, first, last)
        except (VendorError, ValueError) as e:
            out.failed[vendor.name] = str(e)
    if not answers:
        detail = "; ".join(out.failed.values()) or "no vendor configured"
        raise LedgerUnavailable(f"corporate actions {first}..{last}: no vendor answered ({detail})")
    for name, stated in answers.items():
        out.changes[name] = warehouse.record_actions(name, symbols, first, last, stated, now)
    out.disagreements = disagreements([a for stated in answers.values() for a in stated], list(answers))
    return out


def reference_closes(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    interval: str,
    actions: Sequence[CorporateAction],
    known: tuple[np.ndarray, np.ndarray] | None = None,
) -> Callable[[CorporateAction], float | None]:
    """The raw close before each action's ex-date, from the daily bars, else the interval's own
    last bar before it. ``known``: (ts, close) of daily bars already read over one contiguous
    range, used where they hold the answer; the rest come from one read of the daily closes."""

    def before_ms(action: CorporateAction) -> int:
        ex = action.ex_date
        return calendar.bounds(ex).open_ms if calendar.is_session(ex) else calendar.day_window_ms(ex)[0]

    dividends = [a for a in actions if a.kind == "dividend"]
    if not dividends:
        return lambda _a: None
    befores = {a: before_ms(a) for a in dividends}
    if known is not None and len(known[0]) and all(known[0][0] < b <= known[0][-1] for b in befores.values()):
        ts, closes = known
    else:
        symbol = dividends[0].symbol
        daily = warehouse.read_bar_arrays(symbol, "1d", -(2**62), max(befores.values()), ("ts", "close"))
        ts, closes = daily[:, 0], daily[:, 1]

    def close(action: CorporateAction) -> float | None:
        before = befores.get(action) or before_ms(action)
        at = int(np.searchsorted(ts, before, side="left")) - 1
        if at >= 0:
            return float(closes[at])
        return warehouse.close_before(action.symbol, [interval], before) if interval != "1d" else None

    return close


def adjustments(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: str,
    adjust: Adjust,
    known: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[Applied], list[Skipped]]:
    """The ledger's actions of ``symbol`` that ``adjust`` applies, with their factors (``known``:
    daily bars already read, see ``reference_closes``)."""
    if adjust == "none":
        return [], []
    actions = warehouse.actions_in_force(symbol)
    if adjust == "split":
        actions = [a for a in actions if a.kind == "split"]
    return applicable(actions, adjust, reference_closes(warehouse, calendar, interval, actions, known))


def read_adjusted(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    adjust: Adjust,
    as_of: date | None = None,
) -> Adjusted:
    """The bars opening in ``[start_ms, end_ms)`` adjusted into the basis of ``as_of`` (default:
    the session of the last bar), with the actions applied and skipped."""
    raw = warehouse.read_bars(symbol, interval, start_ms, end_ms)
    return adjust_frame(warehouse, calendar, symbol, interval, raw, adjust, as_of)


def adjust_frame(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: str,
    raw: pd.DataFrame,
    adjust: Adjust,
    as_of: date | None = None,
) -> Adjusted:
    """``raw`` (canonical bars, ``ts`` in epoch ms, sorted) adjusted as ``read_adjusted`` does."""
    ts = raw["ts"].to_numpy()
    days = session_days(ts, calendar.tz)
    known = (ts, raw["close"].to_numpy(dtype=np.float64)) if interval == "1d" else None
    applied, skipped = adjustments(warehouse, calendar, symbol, interval, adjust, known)
    basis = as_of or (days[-1].astype(object) if len(days) else None)
    if basis is None:
        out = raw.assign(price_factor=np.ones(0), volume_factor=np.ones(0))
        return Adjusted(adjust, as_of, [], skipped, out)
    first = days[0].astype(object) if len(days) else basis
    used = [a for a in applied if first < a.action.ex_date <= basis]
    return Adjusted(adjust, basis, used, skipped, adjust_bars(raw, days, applied, basis))


def adjusted_stream(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: str,
    chunks: Iterator[pd.DataFrame],
    adjust: Adjust,
    sessions: Sequence[date],
    as_of: date | None = None,
) -> tuple[dict[str, object], Iterator[pd.DataFrame]]:
    """The header (mode, basis, actions applied and skipped) and the adjusted chunks of a read of
    ``sessions``, into the basis of ``as_of`` or else of the range's last session."""
    basis = as_of or sessions[-1]
    applied, skipped = adjustments(warehouse, calendar, symbol, interval, adjust)
    lo, hi = min(sessions[0], basis), max(sessions[-1], basis)
    used = [a for a in applied if lo < a.action.ex_date <= hi]
    header = Adjusted(adjust, basis, used, skipped, pd.DataFrame()).header()
    header["unverified"] = unverified(warehouse, symbol, interval, sessions)  # bars whose checks failed
    return header, adjusted_chunks(chunks, calendar.tz, applied, basis)
