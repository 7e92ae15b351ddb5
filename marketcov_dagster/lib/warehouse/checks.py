"""The latest verdict of each check on each partition: what derived data asks before it reads a
source partition (a failed one is never built from)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import check_results


@dataclass(frozen=True)
class Verdict:
    session: str
    check_name: str
    passed: bool
    severity: str  # ERROR or WARN: only a failed ERROR blocks what is derived from the partition
    description: str


class CheckResultStore(WarehouseCore):
    def record_verdicts(
        self, symbol: str, interval: str, verdicts: Sequence[Verdict], run_id: str, now: datetime | None = None
    ) -> None:
        """Each verdict replaces the one before it for the same partition and check."""
        if not verdicts:
            return
        now = now or datetime.now(UTC)
        t = check_results
        with self.begin() as conn:
            for session in sorted({v.session for v in verdicts}):
                names = [v.check_name for v in verdicts if v.session == session]
                conn.execute(
                    t.delete().where(
                        t.c.symbol == symbol,
                        t.c.interval == interval,
                        t.c.session == session,
                        t.c.check_name.in_(names),
                    )
                )
            conn.execute(
                t.insert(),
                [
                    {
                        "symbol": symbol,
                        "interval": interval,
                        "session": v.session,
                        "check_name": v.check_name,
                        "passed": v.passed,
                        "severity": v.severity,
                        "description": v.description,
                        "run_id": run_id,
                        "evaluated_at": now,
                    }
                    for v in verdicts
                ],
            )

    def failed_verdicts(self, symbol: str, interval: str, sessions: Sequence[str]) -> dict[str, list[Verdict]]:
        """The failed ERROR verdicts in force on the sessions, by session."""
        t = check_results
        out: dict[str, list[Verdict]] = {}
        if not sessions:
            return out
        q = (
            sa.select(t.c.session, t.c.check_name, t.c.description)
            .where(t.c.symbol == symbol, t.c.interval == interval, t.c.session.in_(list(sessions)))
            .where(t.c.passed.is_(False), t.c.severity == "ERROR")
            .order_by(t.c.session, t.c.check_name)
        )
        with self.engine.connect() as conn:
            for session, name, description in conn.execute(q):
                out.setdefault(session, []).append(Verdict(session, name, False, "ERROR", description))
        return out

    def failing_partitions(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        """Every partition with a failed ERROR verdict in force: (symbol, interval) -> check -> sessions."""
        t = check_results
        q = (
            sa.select(t.c.symbol, t.c.interval, t.c.check_name, t.c.session)
            .where(t.c.passed.is_(False), t.c.severity == "ERROR")
            .order_by(t.c.symbol, t.c.interval, t.c.check_name, t.c.session)
        )
        out: dict[tuple[str, str], dict[str, list[str]]] = {}
        with self.engine.connect() as conn:
            for symbol, interval, name, session in conn.execute(q):
                out.setdefault((symbol, interval), {}).setdefault(name, []).append(session)
        return out

    @staticmethod
    def _forget_verdicts(conn: Connection, keys: Iterable[tuple[str, str, str]]) -> None:
        """A partition written again has no verdict until its checks run again."""
        t = check_results
        by_asset: dict[tuple[str, str], list[str]] = {}
        for sym, iv, session in keys:
            by_asset.setdefault((sym, iv), []).append(session)
        for (sym, iv), sessions in by_asset.items():
            conn.execute(t.delete().where(t.c.symbol == sym, t.c.interval == iv, t.c.session.in_(sessions)))
