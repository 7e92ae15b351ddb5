"""Bars: idempotent partition writes (with their lineage), reads, expiry and freshness lookups.

Writing a set of partitions deletes exactly those partitions' windows and inserts the new bars in
one transaction, so reruns, overlapping backfills and retries can neither duplicate nor lose rows.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketcov_dagster.lib.bars import COLUMNS
from marketcov_dagster.lib.warehouse.checks import CheckResultStore
from marketcov_dagster.lib.warehouse.lineage import LineageRow, LineageStore
from marketcov_dagster.lib.warehouse.revisions import Revision, RevisionStore
from marketcov_dagster.lib.warehouse.schema import bars, indicator_values, partition_lineage

RETENTION = "retention"  # the lineage "vendor" of a session whose bars the retention job deleted


def _rows_of(indicators: bool) -> sa.Table:
    """The table holding an asset's rows by (symbol, interval, ts): its bars, or its indicators."""
    return indicator_values if indicators else bars


def bars_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of ``COLUMNS`` as a frame (``ts`` int64, the rest float64, NULL as NaN), through one
    float64 array (bar timestamps, epoch milliseconds, are exact in a double)."""
    values = np.array(rows, dtype=np.float64).reshape(-1, len(COLUMNS))
    columns = {c: values[:, j] for j, c in enumerate(COLUMNS)}
    columns["ts"] = columns["ts"].astype(np.int64)
    return pd.DataFrame(columns, copy=False)


RANGES_PER_QUERY = 400  # count_bars_in: ranges per query


@dataclass(frozen=True)
class PartitionWrite:
    """One partition's bars and facts, ready to be written."""

    symbol: str
    interval: str
    session: date
    window_start_ms: int
    window_end_ms: int
    bars: pd.DataFrame
    vendor: str
    expected_rows: int
    checksum: str
    source_checksum: str | None = None  # a derived partition: the checksum of what it was built from
    strays_until_ms: int | None = None  # a fetched one: also remove stored bars up to the next session's window


class BarsStore(LineageStore, RevisionStore, CheckResultStore):
    def write_partitions(
        self,
        writes: Sequence[PartitionWrite],
        run_id: str,
        remediation: Sequence[dict[str, Any]] = (),
        hold: bool = False,
    ) -> list[LineageRow]:
        """Replace every partition's window with its bars and record lineage and the batch's
        remediation entries, atomically. With ``hold`` (``on_revision: hold``), a partition whose
        stored bars the new ones would revise keeps them: the revision is recorded as pending and
        its row returned is the stored partition's lineage, not written again."""
        if not writes:
            return []
        now = datetime.now(UTC)
        out: list[LineageRow] = []
        with self.begin() as conn:
            keys = sorted({(w.symbol, w.interval) for w in writes})
            if self.dialect == "postgresql":
                for sym, iv in keys:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{sym}|{iv}"})
            previous = self._latest_checksums(conn, writes)
            revised: dict[tuple[str, str, str], Revision] = {}
            held: set[tuple[str, str, str]] = set()
            for w in writes:
                key = (w.symbol, w.interval, w.session.isoformat())
                prev = previous.get(key)
                if prev is not None and prev != w.checksum:  # a rewrite that changes data: in the open
                    found = self._record_revision(
                        conn,
                        symbol=w.symbol,
                        interval=w.interval,
                        session=key[2],
                        window=(w.window_start_ms, w.window_end_ms),
                        new=w.bars,
                        vendor=w.vendor,
                        run_id=run_id,
                        old_checksum=prev,
                        new_checksum=w.checksum,
                        now=now,
                        hold=hold,
                    )
                    if found is not None:
                        revised[key] = found
                        if found.status != "accepted":
                            held.add(key)
                            continue  # the stored bars stay in force
                conn.execute(
                    bars.delete().where(
                        bars.c.symbol == w.symbol,
                        bars.c.interval == w.interval,
                        bars.c.ts >= w.window_start_ms,
                        bars.c.ts < max(w.window_end_ms, w.strays_until_ms or 0),  # and bars of no session
                    )
                )
            kept = {k: replace(row, revision=revised[k]) for k, row in self._held_lineage(conn, held).items()}
            filled = [w for w in writes if len(w.bars) and (w.symbol, w.interval, w.session.isoformat()) not in held]
            if filled:  # one frame, its symbol and interval columns added once rather than per partition
                df = pd.concat([w.bars for w in filled], ignore_index=True)
                lengths = [len(w.bars) for w in filled]
                df["symbol"] = np.repeat([w.symbol for w in filled], lengths)
                df["interval"] = np.repeat([w.interval for w in filled], lengths)
                self._insert_bars(conn, df)
            for w in writes:
                key = (w.symbol, w.interval, w.session.isoformat())
                if key in kept:
                    out.append(kept[key])
                    continue
                prev = previous.get(key)
                ts = w.bars["ts"]
                row = LineageRow(
                    symbol=w.symbol,
                    interval=w.interval,
                    session=w.session.isoformat(),
                    vendor=w.vendor,
                    run_id=run_id,
                    rows=len(w.bars),
                    expected_rows=w.expected_rows,
                    checksum=w.checksum,
                    previous_checksum=prev if prev is not None and prev != w.checksum else None,
                    first_bar=int(ts.min()) if len(ts) else None,
                    last_bar=int(ts.max()) if len(ts) else None,
                    written_at=now,
                    source_checksum=w.source_checksum,
                    revision=revised.get(key),
                )
                out.append(row)
            written = [r.columns() for r in out if (r.symbol, r.interval, r.session) not in kept]
            if written:
                conn.execute(partition_lineage.insert(), written)
            self._forget_verdicts(conn, [(w.symbol, w.interval, w.session.isoformat()) for w in writes])
            self.log_remediation(remediation, conn)
        return out

    def _held_lineage(
        self, conn: Connection, keys: set[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], LineageRow]:
        out: dict[tuple[str, str, str], LineageRow] = {}
        for sym, iv in {(k[0], k[1]) for k in keys}:
            sessions = [k[2] for k in keys if k[:2] == (sym, iv)]
            for session, row in self._latest_lineage(conn, sym, iv, sessions).items():
                out[(sym, iv, session)] = row
        return out

    def _latest_checksums(self, conn: Connection, writes: Sequence[PartitionWrite]) -> dict[tuple[str, str, str], str]:
        sessions_by_asset: dict[tuple[str, str], list[str]] = {}
        for w in writes:
            sessions_by_asset.setdefault((w.symbol, w.interval), []).append(w.session.isoformat())
        out: dict[tuple[str, str, str], str] = {}
        for (sym, iv), sessions in sessions_by_asset.items():
            for session, row in self._latest_lineage(conn, sym, iv, sessions).items():
                out[(sym, iv, session)] = row.checksum
        return out

    def _insert_bars(self, conn: Connection, df: pd.DataFrame) -> None:
        cols = ["symbol", "interval", *COLUMNS]
        df = df[cols]
        if self.dialect == "postgresql":
            buf = io.StringIO()
            # repr-precision floats round-trip float64 exactly through COPY's text format
            df.to_csv(buf, index=False, header=False, float_format="%.17g")
            buf.seek(0)
            raw: Any = conn.connection.dbapi_connection  # psycopg2 connection: COPY is driver API
            with raw.cursor() as cur:
                cur.copy_expert(f"COPY bars ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)", buf)
        else:
            # plain DBAPI executemany over tuples built column-wise: SQLAlchemy's per-row parameter
            # processing and DataFrame.to_dict would cost three times the insert itself
            rows = list(zip(*(df[c].tolist() for c in cols), strict=True))
            placeholders = ", ".join("?" * len(cols))
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.executemany(f"INSERT INTO bars ({', '.join(cols)}) VALUES ({placeholders})", rows)
            finally:
                cur.close()

    def read_bars(self, symbol: str, interval: str, start_ms: int, end_ms: int, history: int = 0) -> pd.DataFrame:
        """The bars opening in ``[start_ms, end_ms)``, oldest first; with ``history``, also up to
        that many bars before ``start_ms`` (a warm-up), in the same query."""
        return bars_frame(self._bar_rows(symbol, interval, start_ms, end_ms, COLUMNS, history))

    def read_bar_arrays(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, columns: Sequence[str], history: int = 0
    ) -> np.ndarray:
        """``read_bars``, only ``columns`` (of ``COLUMNS``), as one float64 array with a row per
        bar: for computations that need no frame (``ts`` is exact in a double)."""
        rows = self._bar_rows(symbol, interval, start_ms, end_ms, columns, history)
        return np.array(rows, dtype=np.float64).reshape(-1, len(columns))

    def _bar_rows(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, columns: Sequence[str], history: int
    ) -> Sequence[Any]:
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not a bar column: {sorted(unknown)}")
        m, key = self.mark, self.asset_sql
        lo, params = m, [symbol, interval, start_ms]
        if history > 0:  # from the history-th bar before start_ms, or from the first bar if fewer
            nth = f"SELECT ts FROM bars WHERE {key} AND ts < {m} ORDER BY ts DESC LIMIT 1 OFFSET {int(history) - 1}"
            lo, params = f"COALESCE(({nth}), {m})", [symbol, interval, symbol, interval, start_ms, -(2**62)]
        sql = f"SELECT {', '.join(columns)} FROM bars WHERE {key} AND ts >= {lo} AND ts < {m} ORDER BY ts"
        return self.plain_rows(sql, (*params, end_ms))  # no conversion is needed for these columns

    def expire_before(
        self, symbol: str, interval: str, first_kept: str, cutoff_ms: int, run_id: str, empty_checksum: str
    ) -> tuple[list[str], int]:
        """Delete the bars of every session before ``first_kept`` (bars before ``cutoff_ms``) and
        record each expired session in the lineage as written by ``retention`` with 0 rows.

        Returns the sessions newly expired and the number of bars deleted; running it again
        finds nothing to do."""
        t = partition_lineage
        now = datetime.now(UTC)
        latest = (
            sa.select(
                t.c.session,
                t.c.vendor,
                t.c.checksum,
                sa.func.row_number().over(partition_by=t.c.session, order_by=t.c.id.desc()).label("rn"),
            )
            .where(t.c.symbol == symbol, t.c.interval == interval, t.c.session < first_kept)
            .subquery()
        )
        with self.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{symbol}|{interval}"})
            live = conn.execute(
                sa.select(latest.c.session, latest.c.checksum)
                .where(latest.c.rn == 1, latest.c.vendor != RETENTION)
                .order_by(latest.c.session)
            ).all()
            deleted = conn.execute(
                bars.delete().where(bars.c.symbol == symbol, bars.c.interval == interval, bars.c.ts < cutoff_ms)
            ).rowcount
            if live:
                conn.execute(
                    t.insert(),
                    [
                        {
                            "symbol": symbol,
                            "interval": interval,
                            "session": session,
                            "vendor": RETENTION,
                            "run_id": run_id,
                            "rows": 0,
                            "expected_rows": 0,
                            "checksum": empty_checksum,
                            "previous_checksum": checksum,
                            "first_bar": None,
                            "last_bar": None,
                            "written_at": now,
                        }
                        for session, checksum in live
                    ],
                )
        return [str(s) for s, _ in live], int(deleted)

    def latest_bar_ts(
        self,
        pairs: Sequence[tuple[str, str]],
        not_after: Mapping[tuple[str, str], int] | None = None,
        indicators: bool = False,
    ) -> dict[tuple[str, str], int]:
        """Open time of the newest stored bar of each (symbol, interval) that has any, ignoring
        bars stamped after ``not_after[pair]`` (bars that have not ended yet); ``indicators``: of
        the newest stored indicator row instead (one per bar).

        One indexed ``MAX(ts)`` lookup per pair on one connection: cheap however large ``bars`` is."""
        t = _rows_of(indicators)
        q = sa.select(sa.func.max(t.c.ts)).where(
            t.c.symbol == sa.bindparam("s"), t.c.interval == sa.bindparam("i"), t.c.ts <= sa.bindparam("t")
        )
        out: dict[tuple[str, str], int] = {}
        limits = not_after or {}
        with self.engine.connect() as conn:
            for sym, iv in pairs:
                ts = conn.execute(q, {"s": sym, "i": iv, "t": limits.get((sym, iv), 2**62)}).scalar()
                if ts is not None:
                    out[(sym, iv)] = int(ts)
        return out

    def count_bars_in(
        self, symbol: str, interval: str, ranges: Sequence[tuple[int, int]], indicators: bool = False
    ) -> int:
        """Bars (or indicator rows) of one (symbol, interval) stamped inside any of ``ranges``
        (``[lo, hi)``): an indexed count with a range seek per range, ``RANGES_PER_QUERY`` ranges
        at a time (SQLite refuses an expression deeper than 1,000: decades of nights and weekends)."""
        t = _rows_of(indicators)
        total = 0
        with self.engine.connect() as conn:
            for i in range(0, len(ranges), RANGES_PER_QUERY):
                part = ranges[i : i + RANGES_PER_QUERY]
                inside = sa.or_(*(sa.and_(t.c.ts >= lo, t.c.ts < hi) for lo, hi in part))
                q = sa.select(sa.func.count()).where(t.c.symbol == symbol, t.c.interval == interval, inside)
                total += int(conn.execute(q).scalar_one())
        return total

    def count_bars_after(
        self, pairs: Sequence[tuple[str, str]], after: Mapping[tuple[str, str], int], indicators: bool = False
    ) -> dict[tuple[str, str], int]:
        """Bars (or indicator rows) of each (symbol, interval) stamped after ``after[pair]`` (e.g.
        bars that cannot have ended yet); one indexed count per pair, pairs with none left out."""
        t = _rows_of(indicators)
        q = sa.select(sa.func.count()).where(
            t.c.symbol == sa.bindparam("s"), t.c.interval == sa.bindparam("i"), t.c.ts > sa.bindparam("t")
        )
        out: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            for sym, iv in pairs:
                n = int(conn.execute(q, {"s": sym, "i": iv, "t": after.get((sym, iv), 2**62)}).scalar_one())
                if n:
                    out[(sym, iv)] = n
        return out

    def count_bars(self, symbol: str | None = None, interval: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(bars)
        if symbol:
            q = q.where(bars.c.symbol == symbol)
        if interval:
            q = q.where(bars.c.interval == interval)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())
