"""The corporate-actions ledger: what each vendor stated, when it was first seen and last changed,
and what it withdrew (kept, never deleted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import bars, corporate_actions


@dataclass(frozen=True)
class LedgerEntry:
    action: CorporateAction
    first_seen: datetime
    last_changed: datetime
    withdrawn_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.action.as_dict(),
            "description": self.action.describe(),
            "first_seen": self.first_seen.isoformat(),
            "last_changed": self.last_changed.isoformat(),
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
        }


@dataclass(frozen=True)
class LedgerChanges:
    added: list[CorporateAction]
    changed: list[CorporateAction]
    withdrawn: list[CorporateAction]
    restored: list[CorporateAction]
    unchanged: int

    @property
    def touched(self) -> list[CorporateAction]:
        return [*self.added, *self.changed, *self.withdrawn, *self.restored]


def _terms(a: CorporateAction) -> dict[str, Any]:
    return {
        "symbol": a.symbol,
        "kind": a.kind,
        "ex_date": a.ex_date.isoformat(),
        "ratio_from": a.ratio_from,
        "ratio_to": a.ratio_to,
        "cash": a.cash,
        "currency": a.currency,
    }


def _action(r: Any) -> CorporateAction:
    return CorporateAction(
        symbol=r["symbol"],
        kind=r["kind"],
        ex_date=date.fromisoformat(r["ex_date"]),
        vendor=r["vendor"],
        vendor_id=r["vendor_id"],
        ratio_from=r["ratio_from"],
        ratio_to=r["ratio_to"],
        cash=r["cash"],
        currency=r["currency"],
    )


class ActionsStore(WarehouseCore):
    def record_actions(
        self,
        vendor: str,
        symbols: Sequence[str],
        first: date,
        last: date,
        stated: Sequence[CorporateAction],
        now: datetime | None = None,
    ) -> LedgerChanges:
        """Merge what ``vendor`` states for ``symbols`` with ex-dates in ``first..last``: new actions
        are added, changed terms update ``last_changed``, actions it no longer states there are
        marked withdrawn (and restored if stated again)."""
        now = now or datetime.now(UTC)
        t = corporate_actions
        added: list[CorporateAction] = []
        changed: list[CorporateAction] = []
        withdrawn: list[CorporateAction] = []
        restored: list[CorporateAction] = []
        unchanged = 0
        with self.begin() as conn:
            existing = {
                r["vendor_id"]: r
                for r in conn.execute(
                    sa.select(t).where(
                        t.c.vendor == vendor,
                        t.c.symbol.in_(list(symbols)),
                        t.c.ex_date >= first.isoformat(),
                        t.c.ex_date <= last.isoformat(),
                    )
                ).mappings()
            }
            seen: set[str] = set()
            for a in stated:
                seen.add(a.vendor_id)
                old = existing.get(a.vendor_id)
                if old is None:
                    old = (
                        conn.execute(sa.select(t).where(t.c.vendor == vendor, t.c.vendor_id == a.vendor_id))
                        .mappings()
                        .first()
                    )
                if old is None:
                    conn.execute(
                        t.insert().values(
                            **_terms(a), vendor=vendor, vendor_id=a.vendor_id, first_seen=now, last_changed=now
                        )
                    )
                    added.append(a)
                    continue
                same = _action(old) == a
                if same and old["withdrawn_at"] is None:
                    unchanged += 1
                    continue
                conn.execute(
                    t.update().where(t.c.id == old["id"]).values(**_terms(a), last_changed=now, withdrawn_at=None)
                )
                (restored if same else changed).append(a)
            for vendor_id, r in existing.items():
                if vendor_id not in seen and r["withdrawn_at"] is None:
                    conn.execute(t.update().where(t.c.id == r["id"]).values(withdrawn_at=now, last_changed=now))
                    withdrawn.append(_action(r))
        return LedgerChanges(added, changed, withdrawn, restored, unchanged)

    def ledger_changes_since(self, since: datetime) -> list[tuple[str, date, datetime]]:
        """(symbol, ex-date, when) of every statement added, changed, withdrawn or restored after ``since``."""
        t = corporate_actions
        q = sa.select(t.c.symbol, t.c.ex_date, t.c.last_changed).where(t.c.last_changed > since)
        with self.engine.connect() as conn:
            return [(r[0], date.fromisoformat(r[1]), r[2]) for r in conn.execute(q)]

    def ledger_last_change(self) -> datetime | None:
        """When the ledger last changed; None while it is empty."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(corporate_actions.c.last_changed))).scalar()

    def ledger_entries(self, symbol: str | None = None, include_withdrawn: bool = True) -> list[LedgerEntry]:
        t = corporate_actions
        q = sa.select(t).order_by(t.c.symbol, t.c.ex_date, t.c.kind, t.c.vendor)
        if symbol is not None:
            q = q.where(t.c.symbol == symbol)
        if not include_withdrawn:
            q = q.where(t.c.withdrawn_at.is_(None))
        with self.engine.connect() as conn:
            return [
                LedgerEntry(_action(r), r["first_seen"], r["last_changed"], r["withdrawn_at"])
                for r in conn.execute(q).mappings()
            ]

    def actions_in_force(self, symbol: str, vendors: Sequence[str] = ()) -> list[CorporateAction]:
        """One action per (kind, ex-date): withdrawn ones left out, and where vendors state the
        same action the first of ``vendors`` (the chain's order) is taken."""
        rank = {v: i for i, v in enumerate(vendors)}
        best: dict[tuple[str, str, date], CorporateAction] = {}
        rows = self.plain_rows(  # on every adjusted read: the driver's tuples, no row objects
            "SELECT symbol, kind, ex_date, vendor, vendor_id, ratio_from, ratio_to, cash, currency "
            f"FROM corporate_actions WHERE symbol = {self.mark} AND withdrawn_at IS NULL",
            (symbol,),
        )
        for r in rows:
            a = CorporateAction(r[0], r[1], date.fromisoformat(r[2]), *r[3:])
            held = best.get(a.key)
            if held is None or rank.get(a.vendor, len(rank)) < rank.get(held.vendor, len(rank)):
                best[a.key] = a
        return sorted(best.values(), key=lambda a: (a.ex_date, a.kind))

    def close_before(self, symbol: str, intervals: Sequence[str], before_ms: int) -> float | None:
        """The raw close of the last bar before ``before_ms`` (an ex-date's session open), from the
        first of ``intervals`` that has one: the reference close of a dividend."""
        for interval in intervals:
            with self.engine.connect() as conn:
                close = conn.execute(
                    sa.select(bars.c.close)
                    .where(bars.c.symbol == symbol, bars.c.interval == interval, bars.c.ts < before_ms)
                    .order_by(bars.c.ts.desc())
                    .limit(1)
                ).scalar()
            if close is not None:
                return float(close)
        return None
