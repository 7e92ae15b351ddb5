"""Read-side queries over the warehouse's lineage for the status API: a page of lineage for a
session range, a run's partitions, the vendor that last served each asset. Plain SQLAlchemy Core
on the tables ``warehouse`` defines; nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa

from marketcov_dagster.lib.warehouse import Warehouse, partition_lineage, remediation_log

LINEAGE_FIELDS = (
    "symbol",
    "interval",
    "session",
    "vendor",
    "rows",
    "expected_rows",
    "checksum",
    "previous_checksum",
    "run_id",
    "written_at",
)


def _lineage_row(row: sa.RowMapping) -> dict[str, Any]:
    out = {k: row[k] for k in LINEAGE_FIELDS}
    out["written_at"] = row["written_at"].isoformat()
    return out


def lineage_page(
    wh: Warehouse,
    symbol: str,
    interval: str,
    start: date | None,
    end: date | None,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """Every write of the asset's sessions in ``[start, end]``, by session then write order, one
    page of them, and how many there are in all. Indexed by (symbol, interval, session, id)."""
    t = partition_lineage
    cond = [t.c.symbol == symbol, t.c.interval == interval]
    if start:
        cond.append(t.c.session >= start.isoformat())
    if end:
        cond.append(t.c.session <= end.isoformat())
    q = sa.select(t).where(*cond).order_by(t.c.session, t.c.id).offset(offset).limit(limit)
    with wh.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t).where(*cond)).scalar_one()
        rows = [_lineage_row(r) for r in conn.execute(q).mappings()]
    return rows, int(total)


def lineage_of_run(wh: Warehouse, run_id: str) -> list[dict[str, Any]]:
    """The partitions one Dagster run wrote, by asset and session."""
    t = partition_lineage
    q = sa.select(t).where(t.c.run_id == run_id).order_by(t.c.symbol, t.c.interval, t.c.session, t.c.id)
    with wh.engine.connect() as conn:
        return [_lineage_row(r) for r in conn.execute(q).mappings()]


def last_vendors(wh: Warehouse, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The vendor of the newest write of each (symbol, interval) that has any."""
    t = partition_lineage
    newest = (
        sa.select(sa.func.max(t.c.id).label("id"))
        .where(t.c.symbol == sa.bindparam("s"), t.c.interval == sa.bindparam("i"))
        .scalar_subquery()
    )
    q = sa.select(t.c.vendor).where(t.c.id == newest)
    out: dict[tuple[str, str], str] = {}
    with wh.engine.connect() as conn:
        for s, i in pairs:
            vendor = conn.execute(q, {"s": s, "i": i}).scalar()
            if vendor is not None:
                out[(s, i)] = str(vendor)
    return out


def remediation_counts(wh: Warehouse) -> dict[tuple[str, str], int]:
    """Remediation entries by (kind, interval), for metrics."""
    t = remediation_log
    q = sa.select(t.c.kind, t.c.interval, sa.func.count()).group_by(t.c.kind, t.c.interval)
    with wh.engine.connect() as conn:
        return {(str(k), str(i)): int(n) for k, i, n in conn.execute(q)}
