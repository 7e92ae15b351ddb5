"""Revisions in the open: a re-fetch that changes a stored partition is recorded, never swallowed.

A revision is a rewrite whose new checksum differs from the stored one and whose bars changed,
disappeared, or were added anywhere but after the stored ones (a live session growing at its tail
is not a revision). Each is kept with the old and new checksum, the bars added, removed and
changed, and the largest relative price change.

Under ``on_revision: hold`` a revision is ``pending``: the stored bars stay in force, the vendor's
are kept beside them, and ``lib.warehouse.held`` accepts or rejects it; both versions are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketcov_dagster.lib.bars import COLUMNS
from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import bars, revision_bars, revisions

PRICES = ("open", "high", "low", "close")
ACCEPTED, PENDING, REJECTED, SUPERSEDED = "accepted", "pending", "rejected", "superseded"
VENDOR_SIDE, STORED_SIDE = "vendor", "stored"  # which version revision_bars keeps


@dataclass(frozen=True)
class Diff:
    added: int
    removed: int
    changed: int
    max_rel_change: float
    tail_growth: bool  # only bars after the stored ones were added

    @property
    def is_revision(self) -> bool:
        return bool(self.removed or self.changed or (self.added and not self.tail_growth))


def diff_bars(old: pd.DataFrame, new: pd.DataFrame) -> Diff:
    """What changed from ``old`` to ``new`` (canonical frames of one partition)."""
    merged = old.merge(new, on="ts", how="outer", suffixes=("_old", "_new"), indicator=True)
    added = int((merged["_merge"] == "right_only").sum())
    removed = int((merged["_merge"] == "left_only").sum())
    both = merged[merged["_merge"] == "both"]
    worst = 0.0
    changed_mask = np.zeros(len(both), dtype=bool)
    for c in (*PRICES, "volume"):
        a, b = both[f"{c}_old"].to_numpy(np.float64), both[f"{c}_new"].to_numpy(np.float64)
        differs = a != b
        changed_mask |= differs
        if c in PRICES and differs.any():
            worst = max(worst, float(np.max(np.abs(b[differs] - a[differs]) / np.maximum(np.abs(a[differs]), 1e-12))))
    tail = not removed and (old.empty or bool((new["ts"][~new["ts"].isin(old["ts"])] > old["ts"].max()).all()))
    return Diff(added, removed, int(changed_mask.sum()), worst, tail)


@dataclass(frozen=True)
class Revision:
    id: int
    symbol: str
    interval: str
    session: str
    vendor: str
    run_id: str
    old_checksum: str
    new_checksum: str
    bars_added: int
    bars_removed: int
    bars_changed: int
    max_rel_change: float
    status: str
    revised_at: datetime
    decided_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["revised_at"] = self.revised_at.isoformat()
        d["decided_at"] = self.decided_at.isoformat() if self.decided_at else None
        d["asset_key"] = f"ohlcv/{self.interval}/{self.symbol}"
        return d

    def describe(self) -> str:
        return (
            f"revised {self.symbol} {self.interval} {self.session} ({self.vendor}): {self.bars_changed} changed, "
            f"{self.bars_added} added, {self.bars_removed} removed, largest price change "
            f"{100 * self.max_rel_change:.2f}% ({self.old_checksum[:12]} -> {self.new_checksum[:12]})"
            + (
                f"; held, the stored bars stay: marketcov revisions accept|reject --asset "
                f"ohlcv/{self.interval}/{self.symbol} --partition {self.session}"
                if self.status == PENDING
                else (f"; {self.status}" if self.status != ACCEPTED else "")
            )
        )


class RevisionStore(WarehouseCore):
    @staticmethod
    def _stored(conn: Connection, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        cols = [bars.c[c] for c in COLUMNS]
        rows = conn.execute(
            sa.select(*cols)
            .where(bars.c.symbol == symbol, bars.c.interval == interval, bars.c.ts >= start_ms, bars.c.ts < end_ms)
            .order_by(bars.c.ts)
        ).all()
        return pd.DataFrame(rows, columns=list(COLUMNS)).astype({c: "float64" for c in COLUMNS[1:]})

    def _record_revision(
        self,
        conn: Connection,
        *,
        symbol: str,
        interval: str,
        session: str,
        window: tuple[int, int],
        new: pd.DataFrame,
        vendor: str,
        run_id: str,
        old_checksum: str,
        new_checksum: str,
        now: datetime,
        hold: bool = False,
    ) -> Revision | None:
        """Called inside a partition rewrite, before the old bars are replaced. With ``hold``, the
        revision is pending (the caller keeps the stored bars) and the vendor's bars are kept with it;
        a version already pending or rejected is not recorded again."""
        diff = diff_bars(self._stored(conn, symbol, interval, *window), new)
        if not diff.is_revision:
            return None
        if hold:
            known = self._held_before(conn, symbol, interval, session, new_checksum)
            if known is not None:  # the vendor serves again what is pending or was rejected
                return known
            conn.execute(  # a newer answer supersedes any still pending
                revisions.update()
                .where(*self._partition(symbol, interval, session), revisions.c.status == PENDING)
                .values(status=SUPERSEDED, decided_at=now)
            )
        row: dict[str, Any] = {
            "symbol": symbol,
            "interval": interval,
            "session": session,
            "vendor": vendor,
            "run_id": run_id,
            "old_checksum": old_checksum,
            "new_checksum": new_checksum,
            "bars_added": diff.added,
            "bars_removed": diff.removed,
            "bars_changed": diff.changed,
            "max_rel_change": diff.max_rel_change,
            "status": PENDING if hold else ACCEPTED,
            "revised_at": now,
            "decided_at": None if hold else now,
        }
        rid = int(conn.execute(revisions.insert().values(**row).returning(revisions.c.id)).scalar_one())
        if hold:  # the vendor's version, kept beside the stored one until a decision
            self._keep(conn, rid, VENDOR_SIDE, new)
        return Revision(id=rid, **row)

    @staticmethod
    def _keep(conn: Connection, revision_id: int, side: str, frame: pd.DataFrame) -> None:
        """Keep one version of a held revision's bars."""
        rows: list[dict[str, Any]] = [
            {
                "revision_id": revision_id,
                "side": side,
                "ts": int(r[0]),
                **dict(zip(COLUMNS[1:], map(float, r[1:]), strict=True)),
            }
            for r in frame[list(COLUMNS)].itertuples(index=False)
        ]
        if rows:
            conn.execute(revision_bars.insert(), rows)

    @staticmethod
    def _partition(symbol: str, interval: str, session: str) -> tuple[Any, ...]:
        t = revisions
        return (t.c.symbol == symbol, t.c.interval == interval, t.c.session == session)

    def _held_before(
        self, conn: Connection, symbol: str, interval: str, session: str, new_checksum: str
    ) -> Revision | None:
        row = (
            conn.execute(
                sa.select(revisions)
                .where(
                    *self._partition(symbol, interval, session),
                    revisions.c.new_checksum == new_checksum,
                    revisions.c.status.in_([PENDING, REJECTED]),
                )
                .order_by(revisions.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return Revision(**row) if row else None

    def pending_revisions(self, symbol: str, interval: str, sessions: Sequence[str]) -> dict[str, Revision]:
        """The revision pending a decision of each of ``sessions`` that has one."""
        t = revisions
        q = sa.select(t).where(
            t.c.symbol == symbol, t.c.interval == interval, t.c.session.in_(list(sessions)), t.c.status == PENDING
        )
        with self.engine.connect() as conn:
            return {r["session"]: Revision(**r) for r in conn.execute(q).mappings()}

    def held_bars(self, revision_id: int, side: str = VENDOR_SIDE) -> pd.DataFrame:
        """The bars kept with a held revision: the vendor's (``vendor``) or the superseded stored ones (``stored``)."""
        t = revision_bars
        q = (
            sa.select(*(t.c[c] for c in COLUMNS))
            .where(t.c.revision_id == revision_id, t.c.side == side)
            .order_by(t.c.ts)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return pd.DataFrame(rows, columns=list(COLUMNS)).astype({c: "float64" for c in COLUMNS[1:]})

    def revisions(
        self,
        since: datetime | None = None,
        symbols: Sequence[str] | None = None,
        intervals: Sequence[str] | None = None,
        run_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Revision]:
        """Recorded revisions, newest first."""
        t = revisions
        q = sa.select(t).order_by(t.c.id.desc())
        if since is not None:
            q = q.where(t.c.revised_at >= since.astimezone(UTC))
        if symbols:
            q = q.where(t.c.symbol.in_(list(symbols)))
        if intervals:
            q = q.where(t.c.interval.in_(list(intervals)))
        if run_ids:
            q = q.where(t.c.run_id.in_(list(run_ids)))
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [Revision(**r) for r in conn.execute(q).mappings()]

    def revision_counts(self) -> dict[str, int]:
        """Revisions recorded per interval (``marketcov_revisions_total``)."""
        t = revisions
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.interval, sa.func.count()).group_by(t.c.interval)).all()
        return {str(iv): int(n) for iv, n in rows}
