"""The bar warehouse on SQLAlchemy 2 Core: SQLite by default, PostgreSQL by URL, same code.

Tables (schema version 3):

* ``bars``: one row per (symbol, interval, ts); ``ts`` is the bar open as UTC epoch milliseconds.
* ``partition_lineage``: one row per partition write (vendor, run id, rows, expected rows,
  checksum, first/last bar, time, and the previous checksum when a rewrite changed the data).
* ``remediation_log``: gaps, invalid bars, checksum mismatches and vendor errors.
* ``vendor_status``: each vendor's health from its most recent real calls (v2).
* ``vendor_limits``: each vendor's shared token bucket and Retry-After/ban block, so every process
  and run calling one vendor respects one rate (v2).
* ``incidents``: freshness incidents, at most one open per asset, with when each was emailed (v3).
* ``outbox``: every alert email, deduplicated by key, kept pending until SMTP accepts it (v3).
* ``schema_version``: the applied schema version; migrations run on start.

Writing a set of partitions deletes exactly those partitions' windows and inserts the new bars in
one transaction, so reruns, overlapping backfills and retries can neither duplicate nor lose rows.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from marketcov_dagster.lib.bars import COLUMNS
from marketcov_dagster.lib.kinds import SESSION_STATE_KINDS

WAREHOUSE_URL_ENV = "MARKETCOV_WAREHOUSE_URL"
SCHEMA_VERSION = 3


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back with its offset: SQLite keeps no zone, so
    without this a read there is naive while the same read on PostgreSQL is aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} written to the warehouse; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", UtcDateTime(), nullable=False),
)

bars = sa.Table(
    "bars",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),
    sa.Column("open", sa.Float(precision=53), nullable=False),
    sa.Column("high", sa.Float(precision=53), nullable=False),
    sa.Column("low", sa.Float(precision=53), nullable=False),
    sa.Column("close", sa.Float(precision=53), nullable=False),
    sa.Column("volume", sa.Float(precision=53), nullable=False),
)

partition_lineage = sa.Table(
    "partition_lineage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("session", sa.String(10), nullable=False),
    sa.Column("vendor", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("expected_rows", sa.Integer, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("previous_checksum", sa.String(64)),
    sa.Column("first_bar", sa.BigInteger),
    sa.Column("last_bar", sa.BigInteger),
    sa.Column("written_at", UtcDateTime(), nullable=False),
    sa.Index("ix_lineage_partition", "symbol", "interval", "session", "id"),
)

remediation_log = sa.Table(
    "remediation_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("session", sa.String(10)),
    sa.Column("vendor", sa.String(32)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_remediation_asset", "symbol", "interval", "session"),
)


vendor_status = sa.Table(
    "vendor_status",
    metadata,
    sa.Column("vendor", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("http_status", sa.Integer),
    sa.Column("since", UtcDateTime(), nullable=False),
    sa.Column("last_call_at", UtcDateTime(), nullable=False),
    sa.Column("last_ok_at", UtcDateTime()),
    sa.Column("last_failure_at", UtcDateTime()),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("rate_limited", sa.Integer, nullable=False),
)

vendor_limits = sa.Table(
    "vendor_limits",
    metadata,
    sa.Column("vendor", sa.String(32), primary_key=True),
    sa.Column("tokens", sa.Float(precision=53), nullable=False),
    sa.Column("updated_at", sa.Float(precision=53), nullable=False),
    sa.Column("blocked_until", sa.Float(precision=53), nullable=False),
    sa.Column("blocked_reason", sa.Text, nullable=False),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("asset_key", sa.String(80), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("lag_minutes", sa.Float(precision=53)),
    sa.Column("max_lag_minutes", sa.Float(precision=53)),
    sa.Column("last_lag_minutes", sa.Float(precision=53)),
    sa.Column("last_checked_at", UtcDateTime(), nullable=False),
    sa.Column("alert_sent_at", UtcDateTime()),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("recovery_sent_at", UtcDateTime()),
    # at most one open incident per asset, whoever evaluates it and however often
    sa.Index(
        "ux_incidents_open",
        "asset_key",
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    ),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("incident_id", sa.Integer),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("sent_at", UtcDateTime()),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_until", sa.Float(precision=53), nullable=False),
    sa.Index("ix_outbox_pending", "sent_at", "id"),
)

# schema version -> tables it adds; ensure_schema applies the missing ones in order
MIGRATIONS: dict[int, list[sa.Table]] = {
    1: [bars, partition_lineage, remediation_log],
    2: [vendor_status, vendor_limits],
    3: [incidents, outbox],
}
HEALTHY = "ok"
RETENTION = "retention"  # the lineage "vendor" of a session whose bars the retention job deleted
VENDOR_STATES = (
    "ok",
    "rate_limited",
    "banned",
    "unavailable",
    "restricted",
    "auth_failing",
    "bad_payload",
    "no_data",  # answered, but with nothing for sessions that traded (unknown symbol, or no coverage)
)


def default_warehouse_url() -> str:
    """``MARKETCOV_WAREHOUSE_URL`` if set, else a SQLite file under ``DAGSTER_HOME`` (or cwd)."""
    url = os.environ.get(WAREHOUSE_URL_ENV)
    if url:
        return url
    home = Path(os.environ.get("DAGSTER_HOME") or ".")
    return f"sqlite:///{(home / 'marketcov_warehouse.sqlite').resolve()}"


class WarehouseError(RuntimeError):
    """The warehouse URL is malformed or its database cannot be reached; the message says which
    and never carries a password."""


def _first_line(e: sa.exc.DBAPIError) -> str:
    text = str(e.orig).strip().splitlines()
    return text[0] if text else type(e.orig).__name__


def existing_or_empty(url: str | None = None) -> Warehouse:
    """The warehouse for read-only commands: an embedded SQLite file that does not exist yet is
    not created; an empty in-memory warehouse stands in for it."""
    url = url or default_warehouse_url()
    try:
        u = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return Warehouse(url)  # raises the clear error
    on_disk = u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:")
    if on_disk and not Path(str(u.database)).exists():
        return Warehouse("sqlite://")
    return Warehouse(url)


def redact_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # take the write lock at BEGIN so two writers serialise instead of failing on upgrade
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Warehouse:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_warehouse_url()
        try:
            u = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError:
            raise WarehouseError(
                f"{WAREHOUSE_URL_ENV} is not a database URL (use sqlite:///path or postgresql://user@host/db)"
            ) from None
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(self.url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            # let SQLAlchemy not emit its own BEGIN; we emit BEGIN IMMEDIATE
            self.engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        elif self.dialect == "postgresql":
            if u.drivername == "postgresql":
                u = u.set(drivername="postgresql+psycopg2")
            self.engine = sa.create_engine(u, pool_pre_ping=True)
        else:
            raise WarehouseError(f"unsupported warehouse {redact_url(self.url)}: use sqlite:/// or postgresql://")
        try:
            self.ensure_schema()
        except sa.exc.OperationalError as e:
            self.engine.dispose()
            raise WarehouseError(f"warehouse {redact_url(self.url)} unreachable: {_first_line(e)}") from None

    def __repr__(self) -> str:
        return f"Warehouse({redact_url(self.url)})"

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; SQLite takes the write lock up front."""
        if self.dialect == "sqlite":
            with self.engine.connect() as conn:
                _sqlite_begin(conn)
                try:
                    yield conn
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
        else:
            with self.engine.begin() as conn:
                yield conn

    # ---- schema -------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        with self.begin() as conn:
            if self.dialect == "postgresql":  # two processes starting at once must not race
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('marketcov_schema'))"))
            metadata.create_all(conn, tables=[schema_version])
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"warehouse schema is version {current}, newer than this code ({SCHEMA_VERSION})")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                metadata.create_all(conn, tables=MIGRATIONS[version])
                conn.execute(schema_version.insert().values(version=version, applied_at=datetime.now(UTC)))

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one())

    # ---- writes -------------------------------------------------------------------------
    def write_partitions(
        self,
        writes: Sequence[PartitionWrite],
        run_id: str,
        remediation: Sequence[dict[str, Any]] = (),
    ) -> list[LineageRow]:
        """Replace every partition's window with its bars and record lineage and the batch's
        remediation entries, atomically."""
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
            for w in writes:
                conn.execute(
                    bars.delete().where(
                        bars.c.symbol == w.symbol,
                        bars.c.interval == w.interval,
                        bars.c.ts >= w.window_start_ms,
                        bars.c.ts < w.window_end_ms,
                    )
                )
            frames = [w.bars.assign(symbol=w.symbol, interval=w.interval) for w in writes if len(w.bars)]
            if frames:
                self._insert_bars(conn, pd.concat(frames, ignore_index=True))
            for w in writes:
                prev = previous.get((w.symbol, w.interval, w.session.isoformat()))
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
                )
                out.append(row)
            conn.execute(partition_lineage.insert(), [r.__dict__ for r in out])
            self.log_remediation(remediation, conn)
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

    # ---- reads --------------------------------------------------------------------------
    def read_bars(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        q = (
            sa.select(*(bars.c[c] for c in COLUMNS))
            .where(
                bars.c.symbol == symbol,
                bars.c.interval == interval,
                bars.c.ts >= start_ms,
                bars.c.ts < end_ms,
            )
            .order_by(bars.c.ts)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        df = pd.DataFrame(rows, columns=list(COLUMNS))
        df["ts"] = df["ts"].astype("int64")
        for c in COLUMNS[1:]:
            df[c] = df[c].astype("float64")
        return df

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

    def insert_ignore(self, table: sa.Table, row: dict[str, Any], unique_column: str) -> sa.Executable:
        """``INSERT`` that does nothing when ``unique_column`` already holds the value."""
        ins = (sqlite_insert if self.dialect == "sqlite" else pg_insert)(table).values(**row)
        return ins.on_conflict_do_nothing(index_elements=[unique_column])

    # ---- vendors: shared rate limit and health --------------------------------------------
    def _vendor_row(self, conn: Connection, table: sa.Table, defaults: dict[str, Any]) -> dict[str, Any]:
        """Lock (or create) one vendor's row for the rest of the transaction."""
        conn.execute(self.insert_ignore(table, defaults, "vendor"))
        q = sa.select(table).where(table.c.vendor == defaults["vendor"])
        if self.dialect == "postgresql":
            q = q.with_for_update()
        return dict(conn.execute(q).mappings().one())

    def take_vendor_token(self, vendor: str, per_minute: float, burst: int, now: float) -> float:
        """Take one request slot from ``vendor``'s shared token bucket.

        Returns 0.0 when the caller may send now, else the seconds to wait before asking again
        (the bucket is empty, or the vendor is blocked by a Retry-After or a ban)."""
        with self.begin() as conn:
            row = self._vendor_row(
                conn,
                vendor_limits,
                {
                    "vendor": vendor,
                    "tokens": float(burst),
                    "updated_at": now,
                    "blocked_until": 0.0,
                    "blocked_reason": "",
                },
            )
            if row["blocked_until"] > now:
                return float(row["blocked_until"] - now)
            tokens = min(float(burst), row["tokens"] + max(0.0, now - row["updated_at"]) * per_minute / 60.0)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) * 60.0 / per_minute
            conn.execute(
                vendor_limits.update().where(vendor_limits.c.vendor == vendor).values(tokens=tokens, updated_at=now)
            )
            return wait

    def block_vendor(self, vendor: str, until: float, reason: str) -> None:
        """No process sends ``vendor`` a request before ``until`` (epoch seconds)."""
        with self.begin() as conn:
            row = self._vendor_row(
                conn,
                vendor_limits,
                {"vendor": vendor, "tokens": 0.0, "updated_at": until, "blocked_until": 0.0, "blocked_reason": ""},
            )
            if until > row["blocked_until"]:
                conn.execute(
                    vendor_limits.update()
                    .where(vendor_limits.c.vendor == vendor)
                    .values(blocked_until=until, blocked_reason=reason)
                )

    def vendor_block(self, vendor: str) -> tuple[float, str]:
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(vendor_limits.c.blocked_until, vendor_limits.c.blocked_reason).where(
                    vendor_limits.c.vendor == vendor
                )
            ).first()
        return (float(r[0]), str(r[1])) if r else (0.0, "")

    def record_vendor_call(
        self, vendor: str, state: str, detail: str, http_status: int | None = None, *, count_call: bool = True
    ) -> None:
        """Record the outcome of one real call; ``state`` is one of ``VENDOR_STATES``. With
        ``count_call=False`` it revises the state of a call already counted (judged later)."""
        if state not in VENDOR_STATES:
            raise ValueError(f"unknown vendor state {state!r}")
        now = datetime.now(UTC)
        with self.begin() as conn:
            row = self._vendor_row(
                conn,
                vendor_status,
                {
                    "vendor": vendor,
                    "state": state,
                    "detail": detail,
                    "since": now,
                    "last_call_at": now,
                    "calls": 0,
                    "failures": 0,
                    "rate_limited": 0,
                },
            )
            ok = state == HEALTHY
            values: dict[str, Any] = {
                "state": state,
                "detail": detail,
                "http_status": http_status,
                "last_call_at": now,
                "calls": row["calls"] + (1 if count_call else 0),
                "failures": row["failures"] + (0 if ok else 1),
                "rate_limited": row["rate_limited"] + (1 if state in ("rate_limited", "banned") else 0),
            }
            if row["state"] != state:
                values["since"] = now
            values["last_ok_at" if ok else "last_failure_at"] = now
            conn.execute(vendor_status.update().where(vendor_status.c.vendor == vendor).values(**values))

    def vendor_statuses(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(vendor_status).order_by(vendor_status.c.vendor)).mappings().all()
        return [dict(r) for r in rows]

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
        self, pairs: Sequence[tuple[str, str]], not_after: Mapping[tuple[str, str], int] | None = None
    ) -> dict[tuple[str, str], int]:
        """Open time of the newest stored bar of each (symbol, interval) that has any, ignoring
        bars stamped after ``not_after[pair]`` (bars that have not ended yet).

        One indexed ``MAX(ts)`` lookup per pair on one connection: cheap however large ``bars`` is."""
        q = sa.select(sa.func.max(bars.c.ts)).where(
            bars.c.symbol == sa.bindparam("s"), bars.c.interval == sa.bindparam("i"), bars.c.ts <= sa.bindparam("t")
        )
        out: dict[tuple[str, str], int] = {}
        limits = not_after or {}
        with self.engine.connect() as conn:
            for sym, iv in pairs:
                ts = conn.execute(q, {"s": sym, "i": iv, "t": limits.get((sym, iv), 2**62)}).scalar()
                if ts is not None:
                    out[(sym, iv)] = int(ts)
        return out

    def count_bars_after(
        self, pairs: Sequence[tuple[str, str]], after: Mapping[tuple[str, str], int]
    ) -> dict[tuple[str, str], int]:
        """Bars of each (symbol, interval) stamped after ``after[pair]`` (e.g. bars that cannot
        have ended yet); one indexed count per pair, pairs with none left out."""
        q = sa.select(sa.func.count()).where(
            bars.c.symbol == sa.bindparam("s"), bars.c.interval == sa.bindparam("i"), bars.c.ts > sa.bindparam("t")
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

    def execute(self, statement: str, params: dict[str, Any] | None = None) -> None:
        """Run one raw statement in its own transaction (used by operators and tests)."""
        with self.begin() as conn:
            conn.execute(sa.text(statement), params or {})
