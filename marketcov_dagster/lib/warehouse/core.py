"""The warehouse's connection: URL, engine, transactions, schema on start; what every store shares."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from marketcov_dagster.lib.warehouse.integrity import fix_hint, stat_problem
from marketcov_dagster.lib.warehouse.schema import (
    COLUMN_MIGRATIONS,
    MIGRATIONS,
    SCHEMA_VERSION,
    metadata,
    schema_version,
)

WAREHOUSE_URL_ENV = "MARKETCOV_WAREHOUSE_URL"


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


class WarehouseDamaged(WarehouseError):
    """The embedded warehouse file is damaged (truncated, emptied, overwritten): never written into."""


def sqlite_path(url: str) -> Path | None:
    """The file of an embedded (SQLite, on disk) warehouse URL; None for any other."""
    try:
        u = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    return Path(str(u.database))


def _first_line(e: sa.exc.DBAPIError) -> str:
    text = str(e.orig).strip().splitlines()
    return text[0] if text else type(e.orig).__name__


def redact_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _create_whole(path: Path) -> None:
    """Put a new, empty SQLite database (its header written, in WAL mode) at ``path`` in one step:
    made aside and linked into place, so no process ever sees a zero-byte warehouse that is only
    being created (a zero-byte file is damage). Another process winning the race is fine."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{id(path)}.new")
    try:
        conn = sqlite3.connect(aside)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
        os.link(aside, path)
    except FileExistsError:
        pass
    except (OSError, sqlite3.Error) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise WarehouseError(f"warehouse {path} cannot be created in {path.parent}: {reason}") from None
    finally:
        for leftover in (aside, aside.with_name(aside.name + "-wal"), aside.with_name(aside.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _sqlite_begin(conn: Connection) -> None:
    # take the write lock at BEGIN so two writers serialise instead of failing on upgrade
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class WarehouseCore:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_warehouse_url()
        try:
            u = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError:
            raise WarehouseError(
                f"{WAREHOUSE_URL_ENV} is not a database URL (use sqlite:///path or postgresql://user@host/db)"
            ) from None
        self.dialect = u.get_backend_name()
        self.mark = "?" if self.dialect == "sqlite" else "%s"  # the driver's parameter marker, for plain SQL
        self.asset_sql = f'symbol = {self.mark} AND "interval" = {self.mark}'  # plain SQL: one asset's rows
        if self.dialect == "sqlite":
            path = sqlite_path(self.url)
            problem = stat_problem(path) if path else None  # never opens the file: see stat_problem
            if path and problem:
                raise WarehouseDamaged(f"warehouse {path} {problem}; {fix_hint(path)}")
            if u.database and u.database != ":memory:" and not Path(u.database).parent.is_dir():
                raise WarehouseError(
                    f"warehouse {u.database}: the directory {Path(u.database).parent} does not exist "
                    f"(create it, or fix {WAREHOUSE_URL_ENV}); no new warehouse was made"
                )
            if path and not path.exists():
                _create_whole(path)
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
                for table, column in COLUMN_MIGRATIONS.get(version, []):
                    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
                    if column.name not in present:  # a table just created has it already
                        kind = column.type.compile(dialect=conn.dialect)
                        conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
                conn.execute(schema_version.insert().values(version=version, applied_at=datetime.now(UTC)))

    def plain_rows(self, sql: str, params: Sequence[Any]) -> Sequence[Any]:
        """One read in plain SQL, as the driver's tuples: on the hot paths (bars, written
        sessions) building a SQLAlchemy statement and a row object per row costs more than the query."""
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql(sql, tuple(params))
            return result.cursor.fetchall() if result.cursor is not None else []

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one())

    def insert_ignore(self, table: sa.Table, row: dict[str, Any], unique_column: str) -> sa.Executable:
        """``INSERT`` that does nothing when ``unique_column`` already holds the value."""
        ins = (sqlite_insert if self.dialect == "sqlite" else pg_insert)(table).values(**row)
        return ins.on_conflict_do_nothing(index_elements=[unique_column])

    def execute(self, statement: str, params: dict[str, Any] | None = None) -> None:
        """Run one raw statement in its own transaction (used by operators and tests)."""
        with self.begin() as conn:
            conn.execute(sa.text(statement), params or {})
