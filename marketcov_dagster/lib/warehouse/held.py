"""Deciding held revisions (``on_revision: hold``): accept puts the vendor's bars in force, reject
keeps the stored ones; either way both versions stay in ``revision_bars``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa

from marketcov_dagster.lib.bars import COLUMNS
from marketcov_dagster.lib.warehouse.bars import BarsStore
from marketcov_dagster.lib.warehouse.lineage import LineageRow
from marketcov_dagster.lib.warehouse.revisions import (
    ACCEPTED,
    PENDING,
    REJECTED,
    STORED_SIDE,
    VENDOR_SIDE,
    Revision,
)
from marketcov_dagster.lib.warehouse.schema import bars, partition_lineage, revision_bars, revisions

Decision = Literal["accept", "reject"]


class RevisionDecisionError(ValueError):
    """No pending revision to decide."""


class HeldRevisionStore(BarsStore):
    def decide_revision(
        self,
        symbol: str,
        interval: str,
        session: str,
        decision: Decision,
        window: tuple[int, int],
        run_id: str,
        now: datetime | None = None,
    ) -> Revision:
        """Accept or reject the pending revision of one partition (its bars open in ``window``),
        atomically. Raises ``RevisionDecisionError``, changing nothing, when none is pending."""
        now = now or datetime.now(UTC)
        pending = self.pending_revisions(symbol, interval, [session]).get(session)
        if pending is None:
            raise RevisionDecisionError(
                f"ohlcv/{interval}/{symbol} {session}: no revision pending a decision (marketcov revisions lists them)"
            )
        status = ACCEPTED if decision == "accept" else REJECTED
        with self.begin() as conn:
            if decision == "accept":
                self._put_in_force(conn, pending, window, run_id, now)
            conn.execute(
                revisions.update()
                .where(revisions.c.id == pending.id, revisions.c.status == PENDING)
                .values(status=status, decided_at=now)
            )
        return replace(pending, status=status, decided_at=now)

    def _put_in_force(
        self, conn: sa.Connection, rev: Revision, window: tuple[int, int], run_id: str, now: datetime
    ) -> None:
        """The vendor's bars of ``rev`` replace the stored ones, which are kept as the stored side."""
        self._keep(conn, rev.id, STORED_SIDE, self._stored(conn, rev.symbol, rev.interval, *window))
        t = revision_bars
        vendor_rows = conn.execute(
            sa.select(*(t.c[c] for c in COLUMNS)).where(t.c.revision_id == rev.id, t.c.side == VENDOR_SIDE)
        ).all()
        conn.execute(
            bars.delete().where(
                bars.c.symbol == rev.symbol,
                bars.c.interval == rev.interval,
                bars.c.ts >= window[0],
                bars.c.ts < window[1],
            )
        )
        if vendor_rows:
            conn.execute(
                bars.insert(),
                [
                    {"symbol": rev.symbol, "interval": rev.interval, **dict(zip(COLUMNS, r, strict=True))}
                    for r in vendor_rows
                ],
            )
        last = self._latest_lineage(conn, rev.symbol, rev.interval, [rev.session]).get(rev.session)
        ts = [int(r[0]) for r in vendor_rows]
        row = LineageRow(
            symbol=rev.symbol,
            interval=rev.interval,
            session=rev.session,
            vendor=rev.vendor,
            run_id=run_id,
            rows=len(vendor_rows),
            expected_rows=last.expected_rows if last else len(vendor_rows),
            checksum=rev.new_checksum,
            previous_checksum=rev.old_checksum,
            first_bar=min(ts) if ts else None,
            last_bar=max(ts) if ts else None,
            written_at=now,
        )
        conn.execute(partition_lineage.insert().values(**row.columns()))
