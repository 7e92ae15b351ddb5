"""Ingest path vs the raw write floor, side by side in one run.

Ours: ``ingest_sessions`` (split by session, validate, quarantine, checksum, replace each
partition's window, lineage) for every symbol over N sessions of minute bars, with a vendor that
serves pre-generated bars so the vendor's own cost is left out. Floor: the same rows written the
fastest plain way into an empty table of the same shape: SQLite ``executemany`` in one
transaction; PostgreSQL ``COPY``.

    .venv/bin/python -m bench.bench_ingest                 # 90 sessions x 10 symbols (~350k bars)
    .venv/bin/python -m bench.bench_ingest --smoke         # tiny, for CI
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from bench.common import best_of, report
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.vendors.base import Vendor
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
XNYS = get_calendar("XNYS")
NOW = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)


class CachedVendor(Vendor):
    """Serves bars generated before timing starts."""

    name = "cached"

    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = frames

    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        df = self.frames[symbol]
        lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        return df[(df["ts"] >= lo) & (df["ts"] < hi)].reset_index(drop=True)


def make_data(n_sessions: int, n_symbols: int) -> tuple[list[date], dict[str, pd.DataFrame]]:
    sessions = XNYS.sessions(date(2025, 1, 1), date(2025, 12, 31))[-n_sessions:]
    symbols = [f"SYM{i:03d}" for i in range(n_symbols)]
    synthetic = SyntheticVendor(lambda _s: XNYS, clock=lambda: NOW)
    start = datetime.fromtimestamp(XNYS.bounds(sessions[0]).open_ms / 1000, UTC)
    end = datetime.fromtimestamp(XNYS.bounds(sessions[-1]).close_ms / 1000, UTC)
    return sessions, {s: synthetic.fetch_bars(s, "1m", start, end) for s in symbols}


def ours(url: str, sessions: list[date], frames: dict[str, pd.DataFrame]) -> Callable[[], None]:
    def run() -> None:
        wh = Warehouse(url)
        wh.execute("DELETE FROM bars")
        wh.execute("DELETE FROM partition_lineage")
        vendor = CachedVendor(frames)
        for symbol in frames:
            ingest_sessions(
                symbol=symbol,
                interval="1m",
                calendar=XNYS,
                sessions=sessions,
                vendors=[vendor],
                warehouse=wh,
                run_id="bench",
                now=NOW,
            )
        wh.dispose()

    return run


def _all_rows(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(symbol=s, interval="1m") for s, f in frames.items()], ignore_index=True)[
        ["symbol", "interval", "ts", "open", "high", "low", "close", "volume"]
    ]


DDL = (
    "CREATE TABLE floor_bars (symbol VARCHAR(32), interval VARCHAR(8), ts BIGINT, open DOUBLE PRECISION, "
    "high DOUBLE PRECISION, low DOUBLE PRECISION, close DOUBLE PRECISION, volume DOUBLE PRECISION, "
    "PRIMARY KEY (symbol, interval, ts))"
)


def sqlite_floor(path: Path, frames: dict[str, pd.DataFrame]) -> Callable[[], None]:
    def run() -> None:
        path.unlink(missing_ok=True)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(DDL)
        rows = _all_rows(frames)
        with conn:
            conn.executemany("INSERT INTO floor_bars VALUES (?,?,?,?,?,?,?,?)", rows.itertuples(index=False, name=None))
        conn.close()

    return run


def postgres_floor(url: str, frames: dict[str, pd.DataFrame]) -> Callable[[], None]:
    engine = sa.create_engine(url)

    def run() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS floor_bars")
            conn.exec_driver_sql(DDL)
            buf = io.StringIO()
            _all_rows(frames).to_csv(buf, index=False, header=False, float_format="%.17g")
            buf.seek(0)
            with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
                cur.copy_expert("COPY floor_bars FROM STDIN WITH (FORMAT csv)", buf)

    return run


def postgres_database() -> str | None:
    try:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        name = f"marketcov_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    except Exception as e:  # no server: report it and bench SQLite only
        print(f"PostgreSQL not reachable ({type(e).__name__}); benchmarking SQLite only", file=sys.stderr)
        return None


def drop_database(url: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=90)
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="3 sessions x 2 symbols, once")
    args = p.parse_args(argv)
    if args.smoke:
        args.sessions, args.symbols, args.repeat = 3, 2, 1
    sessions, frames = make_data(args.sessions, args.symbols)
    n = sum(len(f) for f in frames.values())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
            (
                "SQLite (executemany, one transaction)",
                ours(f"sqlite:///{Path(tmp) / 'wh.sqlite'}", sessions, frames),
                sqlite_floor(Path(tmp) / "floor.sqlite", frames),
            )
        ]
        pg = postgres_database()
        if pg:
            backends.append(("PostgreSQL (COPY)", ours(pg, sessions, frames), postgres_floor(pg, frames)))
        try:
            for label, our_fn, floor_fn in backends:
                our_fn()  # warm up: schema, imports, caches
                floor_fn()
                t_ours = best_of(args.repeat, our_fn)
                t_floor = best_of(args.repeat, floor_fn)
                rows.append(
                    [
                        label,
                        f"{n:,}",
                        f"{t_ours:.2f} s ({n / t_ours:,.0f} bars/s)",
                        f"{t_floor:.2f} s ({n / t_floor:,.0f} bars/s)",
                        f"{t_floor / t_ours:.2f}",
                        ">= 0.5",
                    ]
                )
        finally:
            if pg:
                drop_database(pg)
    report(
        f"Ingest path: {args.sessions} sessions x {args.symbols} symbols of 1m bars",
        ["backend", "bars", "ours (validate, checksum, write)", "floor (raw write)", "ours / floor speed", "target"],
        rows,
        "python -m bench.bench_ingest" + (" --smoke" if args.smoke else ""),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
