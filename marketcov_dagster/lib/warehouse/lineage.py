"""Lineage (one row per partition write) and the remediation log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketcov_dagster.lib.kinds import SESSION_STATE_KINDS
from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import partition_lineage, remediation_log


@dataclass(frozen=True)
class LineageRow:
    symbol: str
    interval: str
    session: str
    vendor: str
    run_id: str
    rows: int
    expected_rows: int
    checksum: str
    previous_checksum: str | None
    first_bar: int | None
    last_bar: int | None
    written_at: datetime
    basis: str | None = "raw"  # the price basis of the bars (every vendor is asked for raw; NULL before v5)
    source_checksum: str | None = None  # a derived partition: its source's checksum when it was built
    revision: Any = None  # the Revision this write recorded, if it changed stored bars (not a column)

    def columns(self) -> dict[str, Any]:
        """The row as the lineage table stores it."""
        return {k: v for k, v in self.__dict__.items() if k != "revision"}


class LineageStore(WarehouseCore):
    @staticmethod
    def _latest_lineage(conn: Connection, symbol: str, interval: str, sessions: Sequence[str]) -> dict[str, LineageRow]:
        cols = [c for c in partition_lineage.c if c.name != "id"]
        latest = (
            sa.select(
                *cols,
                sa.func.row_number()
                .over(partition_by=partition_lineage.c.session, order_by=partition_lineage.c.id.desc())
                .label("rn"),
            )
            .where(
                partition_lineage.c.symbol == symbol,
                partition_lineage.c.interval == interval,
                partition_lineage.c.session.in_(list(sessions)),
            )
            .subquery()
        )
        rows = conn.execute(sa.select(*(latest.c[c.name] for c in cols)).where(latest.c.rn == 1)).mappings()
        return {r["session"]: LineageRow(**r) for r in rows}

    def latest_lineage_many(self, symbol: str, interval: str, sessions: Sequence[str]) -> dict[str, LineageRow]:
        """The latest lineage row of each written session among ``sessions``."""
        with self.engine.connect() as conn:
            return self._latest_lineage(conn, symbol, interval, sessions)

    def written_sessions(self, symbol: str, interval: str, first: str, last: str) -> set[str]:
        """Sessions from ``first`` to ``last`` (ISO dates) with any lineage row: written at least once."""
        m = self.mark
        sql = f"SELECT DISTINCT session FROM partition_lineage WHERE {self.asset_sql} AND session BETWEEN {m} AND {m}"
        return {row[0] for row in self.plain_rows(sql, (symbol, interval, first, last))}  # years of sessions

    def lineage_session_counts(self, first: str, last: str) -> dict[tuple[str, str], int]:
        """(symbol, interval) -> the number of distinct sessions from ``first`` to ``last`` with a write."""
        m = self.mark
        sql = (
            'SELECT symbol, "interval", COUNT(DISTINCT session) FROM partition_lineage '
            f'WHERE session BETWEEN {m} AND {m} GROUP BY symbol, "interval"'
        )
        return {(r[0], r[1]): int(r[2]) for r in self.plain_rows(sql, (first, last))}

    def latest_lineage(self, symbol: str, interval: str, session: str) -> LineageRow | None:
        return self.latest_lineage_many(symbol, interval, [session]).get(session)

    def lineage(self, symbol: str | None = None, interval: str | None = None) -> pd.DataFrame:
        q = sa.select(partition_lineage).order_by(partition_lineage.c.id)
        if symbol:
            q = q.where(partition_lineage.c.symbol == symbol)
        if interval:
            q = q.where(partition_lineage.c.interval == interval)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all())

    def log_remediation(
        self,
        entries: Sequence[dict[str, Any]],
        conn: Connection | None = None,
    ) -> None:
        """Append remediation entries (symbol, interval, session, vendor, kind, detail, run_id).

        The same state of a session found again is not logged again: a gap, fallback, invalid
        bars or checksum mismatch whose detail equals the latest entry for its (symbol, interval,
        session, kind, vendor) is dropped (a rerun finding the same gap adds nothing; a changed
        gap does). Vendor errors are events and are always logged.
        """
        if not entries:
            return
        now = datetime.now(UTC)
        rows = [{"session": None, "vendor": None, "run_id": None, **e, "created_at": now} for e in entries]
        if conn is not None:
            self._insert_new_states(conn, rows)
            return
        with self.begin() as c:
            self._insert_new_states(c, rows)

    @staticmethod
    def _insert_new_states(conn: Connection, rows: list[dict[str, Any]]) -> None:
        t = remediation_log
        latest: dict[tuple[Any, ...], str] = {}
        groups = {(r["symbol"], r["interval"], r["kind"]) for r in rows}
        for symbol, interval, kind in groups:
            sessions = [
                r["session"] for r in rows if (r["symbol"], r["interval"], r["kind"]) == (symbol, interval, kind)
            ]
            q = sa.select(t.c.session, t.c.vendor, t.c.detail).where(
                t.c.symbol == symbol, t.c.interval == interval, t.c.kind == kind
            )
            dated = [s for s in sessions if s is not None]
            if dated and len(dated) == len(sessions):
                q = q.where(t.c.session.between(min(dated), max(dated)))
            for session, vendor, detail in conn.execute(q.order_by(t.c.id)):
                latest[(symbol, interval, kind, session, vendor)] = detail
        fresh = []
        for r in rows:
            key = (r["symbol"], r["interval"], r["kind"], r["session"], r["vendor"])
            if r["kind"] not in SESSION_STATE_KINDS or latest.get(key) != r["detail"]:
                fresh.append(r)
                latest[key] = r["detail"]
        if fresh:
            conn.execute(t.insert(), fresh)

    def remediation(
        self,
        symbols: Sequence[str] | None = None,
        intervals: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        vendors: Sequence[str] | None = None,
        session: str | None = None,
        run_id: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Remediation entries, oldest first, filtered by every argument given."""
        t = remediation_log
        q = sa.select(t).order_by(t.c.id)
        for col, wanted in ((t.c.symbol, symbols), (t.c.interval, intervals), (t.c.kind, kinds), (t.c.vendor, vendors)):
            if wanted:
                q = q.where(col.in_(list(wanted)))
        if session:
            q = q.where(t.c.session == session)
        if run_id:
            q = q.where(t.c.run_id == run_id)
        if since:
            q = q.where(t.c.created_at >= since)
        if limit:
            q = q.order_by(None).order_by(t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        df = pd.DataFrame(rows, columns=[c.name for c in t.c])
        return df.sort_values("id").reset_index(drop=True) if limit else df
