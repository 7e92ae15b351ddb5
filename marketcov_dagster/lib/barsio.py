"""Reading stored bars out for people and programs: a session range streamed from the warehouse
in chunks (keyset pagination on the bar time, so memory stays flat however long the range), and
written as CSV, strict JSON or Parquet. Plain Python; the Dagster input loader and
``marketcov bars`` both use it."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import pandas as pd
import sqlalchemy as sa

from marketcov_dagster.lib.bars import COLUMNS
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.warehouse import Warehouse, bars
from marketcov_dagster.lib.windows import BadRangeError, window_start

CHUNK_ROWS = 50_000


def export_sessions(
    calendar: TradingCalendar, window_days: int, start: date | None, end: date | None, now: datetime
) -> list[date]:
    """The sessions a read of stored bars covers: ``start`` (default: the window's first session)
    to ``end`` (default: the last session that has opened). An empty range is an error."""
    lo = start or window_start(calendar, window_days, now)
    hi = end or calendar.last_opened_session(now) or lo
    if lo > hi:
        raise BadRangeError(f"start {lo} is after end {hi}")
    sessions = calendar.sessions(lo, hi)
    if not sessions:
        raise BadRangeError(f"no {calendar.name} session between {lo} and {hi}")
    return sessions


def session_span_ms(calendar: TradingCalendar, sessions: Sequence[date]) -> tuple[int, int]:
    """``[open of the first session, close of the last)``: every bar of those sessions."""
    return calendar.bounds(sessions[0]).open_ms, calendar.bounds(sessions[-1]).close_ms


def iter_bars(
    wh: Warehouse, symbol: str, interval: str, start_ms: int, end_ms: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """The bars with ``start_ms <= ts < end_ms``, oldest first, ``chunk_rows`` at a time."""
    after = start_ms - 1
    cols = [bars.c[c] for c in COLUMNS]
    while True:
        q = (
            sa.select(*cols)
            .where(bars.c.symbol == symbol, bars.c.interval == interval, bars.c.ts > after, bars.c.ts < end_ms)
            .order_by(bars.c.ts)
            .limit(chunk_rows)
        )
        with wh.engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return
        df = pd.DataFrame(rows, columns=list(COLUMNS)).astype({c: "float64" for c in COLUMNS[1:]})
        df["ts"] = df["ts"].astype("int64")
        yield df
        if len(rows) < chunk_rows:
            return
        after = int(df["ts"].iloc[-1])


def with_indicators(
    wh: Warehouse, symbol: str, interval: str, chunks: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """Each chunk of bars with one column per indicator (NaN where none is stored yet), rounded to
    ``INDICATOR_DECIMALS`` places: ``127.012``, not the float arithmetic's ``127.01200000000001``."""
    for df in chunks:
        values = wh.read_indicators(symbol, interval, int(df["ts"].iloc[0]), int(df["ts"].iloc[-1]) + 1)
        names = [c for c in values.columns if c != "ts"]
        values[names] = values[names].astype("float64").round(INDICATOR_DECIMALS)
        yield df.merge(values, on="ts", how="left")


INDICATOR_DECIMALS = 10
"""Indicator values out (CSV, JSON, Parquet, the API) carry 10 decimal places: far finer than any
price tick, and free of binary floating-point noise; the stored values are kept exact."""


def read_sessions(
    wh: Warehouse, calendar: TradingCalendar, symbol: str, interval: str, sessions: Sequence[date]
) -> pd.DataFrame:
    """Every stored bar of ``sessions`` as one frame with a UTC ``ts`` column."""
    return as_frame(read_sessions_ms(wh, calendar, symbol, interval, sessions))


def read_sessions_ms(
    wh: Warehouse, calendar: TradingCalendar, symbol: str, interval: str, sessions: Sequence[date]
) -> pd.DataFrame:
    """``read_sessions`` with ``ts`` left in epoch milliseconds (canonical bars)."""
    if not sessions:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "ts" else "float64") for c in COLUMNS})
    start, end = session_span_ms(calendar, sorted(sessions))
    chunks = list(iter_bars(wh, symbol, interval, start, end))
    return pd.concat(chunks, ignore_index=True) if chunks else read_sessions_ms(wh, calendar, symbol, interval, [])


def as_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``ts`` as a UTC timestamp column, every other column as float64."""
    out = df.astype({c: "float64" for c in df.columns if c != "ts"})
    out["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="ms", utc=True)
    return out.reset_index(drop=True)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _columns(first: pd.DataFrame | None) -> list[str]:
    return list(first.columns) if first is not None else list(COLUMNS)


def _peek(chunks: Iterator[pd.DataFrame]) -> tuple[pd.DataFrame | None, Iterator[pd.DataFrame]]:
    first = next(chunks, None)
    if first is None:
        return None, iter(())
    return first, itertools.chain([first], chunks)


def csv_text(chunks: Iterator[pd.DataFrame]) -> Iterator[str]:
    """CSV with the bars' columns (and indicator columns when present, empty while warming up),
    one piece per chunk after the header."""
    first, chunks = _peek(chunks)
    yield ",".join(_columns(first)) + "\n"
    for df in chunks:
        yield df.assign(ts=[_iso(int(t)) for t in df["ts"]]).to_csv(index=False, header=False)  # repr floats


def json_text(chunks: Iterator[pd.DataFrame]) -> Iterator[str]:
    """A strict JSON array of ``{"ts", "open", "high", "low", "close", "volume"}`` (plus one key per
    indicator when present, null while warming up), one piece per chunk."""
    first, chunks = _peek(chunks)
    cols = _columns(first)
    sep = "\n"
    yield "["
    for df in chunks:
        values = {c: df[c].tolist() for c in cols}
        records = []
        for i, ts in enumerate(values["ts"]):
            record: dict[str, Any] = {"ts": _iso(int(ts))}
            record.update((c, None if math.isnan(values[c][i]) else float(values[c][i])) for c in cols[1:])
            records.append(sep + json.dumps(record, allow_nan=False))
            sep = ",\n"
        yield "".join(records)
    yield "\n]\n" if first is not None else "]\n"


def write_csv(chunks: Iterator[pd.DataFrame], out: IO[str]) -> int:
    return write_text(csv_text, chunks, out)


def write_json(chunks: Iterator[pd.DataFrame], out: IO[str]) -> int:
    return write_text(json_text, chunks, out)


def write_text(
    text: Callable[[Iterator[pd.DataFrame]], Iterator[str]], chunks: Iterator[pd.DataFrame], out: IO[str]
) -> int:
    """Write ``text`` of the chunks to ``out``; the number of bars written."""
    n = 0

    def counted() -> Iterator[pd.DataFrame]:
        nonlocal n
        for df in chunks:
            n += len(df)
            yield df

    for piece in text(counted()):
        out.write(piece)
    return n


def write_parquet(chunks: Iterator[pd.DataFrame], path: Path) -> int:
    """Parquet with ``ts`` as timestamp[ms, UTC]; one row group per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first, chunks = _peek(chunks)
    schema = pa.schema([("ts", pa.timestamp("ms", tz="UTC"))] + [(c, pa.float64()) for c in _columns(first)[1:]])
    n = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for df in chunks:
            table = pa.Table.from_pandas(as_frame(df), schema=schema, preserve_index=False)
            writer.write_table(table)
            n += len(df)
    return n
