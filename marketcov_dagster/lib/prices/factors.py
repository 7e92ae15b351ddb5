"""Adjustment factors from the ledger, CRSP style (``shared/reference/corporate-actions.md`` §4.1).

For an action with ex-date E, bars of sessions before E are scaled, bars on or after E are not:

* a split of ratio r (shares after per share before): prices × 1/r, volume × r;
* a cash dividend D, with C the raw close of the session before E: prices × (1 − D/C), volume unchanged.

The cumulative factor of a bar of session t into the basis of session b is the product of the
factors of every action with t < E ≤ b; stacking on one ex-date is a product. Raw = adjusted / F.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np

from marketcov_dagster.lib.prices.actions import CorporateAction

Adjust = Literal["none", "split", "all"]
ADJUST_MODES: tuple[Adjust, ...] = ("none", "split", "all")


@dataclass(frozen=True)
class Applied:
    """One ledger action as an adjustment: what bars before its ex-date are multiplied by."""

    action: CorporateAction
    price_factor: float
    volume_factor: float
    reference_close: float | None = None  # the raw close before the ex-date (dividends)

    def as_dict(self) -> dict[str, Any]:
        a = self.action
        return {
            "type": a.kind,
            "ex_date": a.ex_date.isoformat(),
            "description": a.describe(),
            "ratio_from": a.ratio_from if a.kind == "split" else None,
            "ratio_to": a.ratio_to if a.kind == "split" else None,
            "cash": a.cash,
            "currency": a.currency,
            "reference_close": self.reference_close,
            "price_factor": self.price_factor,
            "volume_factor": self.volume_factor,
            "vendor": a.vendor,
            "vendor_id": a.vendor_id,
        }


@dataclass(frozen=True)
class Skipped:
    action: CorporateAction
    reason: str


def applicable(
    actions: Sequence[CorporateAction],
    adjust: Adjust,
    previous_close: Callable[[CorporateAction], float | None],
) -> tuple[list[Applied], list[Skipped]]:
    """The actions ``adjust`` applies, each with its factors, in ex-date order; dividends whose
    previous close is unknown, or that would make prices zero or negative, are skipped and said."""
    applied: list[Applied] = []
    skipped: list[Skipped] = []
    if adjust == "none":
        return applied, skipped
    for a in sorted(actions, key=lambda a: (a.ex_date, a.kind)):
        if a.kind == "split":
            applied.append(Applied(a, 1.0 / a.split_ratio, a.split_ratio))
        elif adjust == "all":
            close = previous_close(a)
            if close is None or close <= 0:
                skipped.append(Skipped(a, "no raw close before its ex-date"))
                continue
            factor = 1.0 - (a.cash or 0.0) / close
            if factor <= 0:
                skipped.append(Skipped(a, f"dividend {a.cash:g} is not below the previous close {close:g}"))
                continue
            applied.append(Applied(a, factor, 1.0, close))
    return applied, skipped


def cumulative(applied: Sequence[Applied], days: np.ndarray, basis: date) -> tuple[np.ndarray, np.ndarray]:
    """Price and volume factors of bars of sessions ``days`` (datetime64[D]) into the basis of
    session ``basis``: the product over actions with day < E <= basis, and for bars after the
    basis the inverse of the product over basis < E <= day (so every bar is on one basis)."""
    kept = sorted(applied, key=lambda x: x.action.ex_date)
    ones = np.ones(len(days), dtype=np.float64)
    if not kept:
        return ones, ones.copy()
    ex = np.array([x.action.ex_date for x in kept], dtype="datetime64[D]")
    # C(x) = the product of the factors of every action with E > x; F(t, b) = C(t) / C(b)
    suffix_price = np.append(np.cumprod([x.price_factor for x in kept][::-1])[::-1], 1.0)
    suffix_volume = np.append(np.cumprod([x.volume_factor for x in kept][::-1])[::-1], 1.0)
    at = np.searchsorted(ex, days.astype("datetime64[D]"), side="right")
    b = int(np.searchsorted(ex, np.datetime64(basis, "D"), side="right"))
    if b == len(kept):  # the usual case, a basis after every action: exact products, no division
        return suffix_price[at], suffix_volume[at]
    return suffix_price[at] / suffix_price[b], suffix_volume[at] / suffix_volume[b]


def ledger_fingerprint(actions: Sequence[CorporateAction], through: date | None = None) -> str:
    """A digest of the actions in force up to ``through`` (all when None): a derived partition
    records it, so a ledger change makes exactly the partitions from its ex-date on stale."""
    h = hashlib.sha256()
    for a in sorted(actions, key=lambda a: (a.ex_date, a.kind, a.vendor_id)):
        if through is None or a.ex_date <= through:
            h.update(f"{a.ex_date}|{a.kind}|{a.ratio_from!r}|{a.ratio_to!r}|{a.cash!r}|{a.currency}\n".encode())
    return h.hexdigest()[:16]
