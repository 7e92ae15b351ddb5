"""``marketcov bars``: stored bars of one asset for a session range, streamed out as CSV, JSON or
Parquet. Read-only: a warehouse that does not exist yet is not created."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

from marketcov_dagster.lib.barsio import (
    export_sessions,
    iter_bars,
    session_span_ms,
    with_indicators,
    write_csv,
    write_json,
    write_parquet,
)
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import AssetSpecification, ConfigError
from marketcov_dagster.lib.warehouse import existing_or_empty


def export_bars(
    spec: AssetSpecification,
    start: date | None,
    end: date | None,
    fmt: str,
    output: str | None,
    indicators: bool = False,
) -> int:
    if fmt == "parquet" and not output:
        raise ConfigError("--format parquet is binary: give --output FILE")
    if output is not None and not output.strip():
        raise ConfigError("--output is empty: give a file name")
    cal = get_calendar(spec.calendar)
    sessions = export_sessions(cal, spec.window_days, start, end, datetime.now(UTC))
    span = session_span_ms(cal, sessions)
    wh = existing_or_empty()
    chunks = iter_bars(wh, spec.symbol, spec.interval, *span)
    if indicators:
        chunks = with_indicators(wh, spec.symbol, spec.interval, chunks)
        if missing := wh.bars_without_indicators(spec.symbol, spec.interval, *span):
            print(
                f"marketcov: note: {missing} bar(s) of {spec.key_str} {sessions[0]}..{sessions[-1]} have no "
                f"indicators stored (never computed, not warming up): marketcov backfill --symbols {spec.symbol} "
                f"--intervals {spec.interval} --indicators --start {sessions[0]} --end {sessions[-1]}",
                file=sys.stderr,
            )
    if fmt == "parquet":
        n = write_parquet(chunks, Path(str(output)))
    elif output:
        with open(output, "w", encoding="utf-8", newline="") as f:
            n = (write_json if fmt == "json" else write_csv)(chunks, f)
    else:
        n = (write_json if fmt == "json" else write_csv)(chunks, sys.stdout)
    if output:
        print(f"marketcov: {n} bar(s) of {spec.key_str} {sessions[0]}..{sessions[-1]} -> {output}", file=sys.stderr)
    wh.dispose()
    return 0
