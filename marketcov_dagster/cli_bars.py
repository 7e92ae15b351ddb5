"""``marketcov bars``: stored bars of one asset for a session range, streamed out as CSV, JSON or
Parquet. Read-only: a warehouse that does not exist yet is not created."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

import pandas as pd

from marketcov_dagster.lib.barsio import (
    export_sessions,
    iter_bars,
    json_text,
    session_span_ms,
    with_indicators,
    write_csv,
    write_json,
    write_parquet,
    write_text,
)
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.prices.adjust import adjusted_json_text
from marketcov_dagster.lib.prices.factors import Adjust
from marketcov_dagster.lib.prices.ledger import adjusted_stream
from marketcov_dagster.lib.sources import unverified
from marketcov_dagster.lib.universe import AssetSpecification, ConfigError
from marketcov_dagster.lib.warehouse import existing_or_empty


def export_bars(
    spec: AssetSpecification,
    start: date | None,
    end: date | None,
    fmt: str,
    output: str | None,
    indicators: bool = False,
    adjust: Adjust = "none",
    as_of: date | None = None,
) -> int:
    if fmt == "parquet" and not output:
        raise ConfigError("--format parquet is binary: give --output FILE")
    if output is not None and not output.strip():
        raise ConfigError("--output is empty: give a file name")
    if output is not None:
        _check_output(Path(output))
    cal = get_calendar(spec.calendar)
    sessions = export_sessions(cal, spec.window_days, start, end, datetime.now(UTC))
    span = session_span_ms(cal, sessions)
    wh = existing_or_empty()
    chunks = iter_bars(wh, spec.symbol, spec.interval, *span)
    header: dict[str, object] | None = None
    if adjust != "none":
        header, chunks = adjusted_stream(wh, cal, spec.symbol, spec.interval, chunks, adjust, sessions, as_of)
        _note_actions(header)
    for u in unverified(wh, spec.symbol, spec.interval, sessions):
        print(
            f"marketcov: note: {spec.key_str} {u['session']} failed {u['check']} ({u['description']}); "
            "its bars are shown as stored",
            file=sys.stderr,
        )
    if indicators:
        chunks = with_indicators(wh, spec.symbol, spec.interval, chunks)
        if missing := wh.bars_without_indicators(spec.symbol, spec.interval, *span):
            print(
                f"marketcov: note: {missing} bar(s) of {spec.key_str} {sessions[0]}..{sessions[-1]} have no "
                f"indicators stored (never computed, not warming up): marketcov backfill --symbols {spec.symbol} "
                f"--intervals {spec.interval} --indicators --start {sessions[0]} --end {sessions[-1]}",
                file=sys.stderr,
            )
    if output:
        try:
            if fmt == "parquet":
                n = write_parquet(chunks, Path(output))
            else:
                with open(output, "w", encoding="utf-8", newline="") as f:
                    n = _write(fmt, header, chunks, f)
        except OSError as e:
            raise ConfigError(f"--output {output}: cannot write it ({e.strerror or e})") from None
    else:
        n = _write(fmt, header, chunks, sys.stdout)
    if output:
        print(f"marketcov: {n} bar(s) of {spec.key_str} {sessions[0]}..{sessions[-1]} -> {output}", file=sys.stderr)
    wh.dispose()
    return 0


def _write(fmt: str, header: dict[str, object] | None, chunks: Iterator[pd.DataFrame], out: IO[str]) -> int:
    """CSV, or JSON: the plain list of bars, or with an adjustment the object naming its basis."""
    if fmt == "csv":
        return write_csv(chunks, out)
    if header is None:
        return write_json(chunks, out)
    return write_text(lambda c: adjusted_json_text(header, c, json_text), chunks, out)


def _note_actions(header: dict[str, object]) -> None:
    """CSV and Parquet carry the factors per bar; the actions behind them go to stderr."""
    actions = header["actions"]
    assert isinstance(actions, list)
    said = ", ".join(f"{a['description']} ex {a['ex_date']}" for a in actions) or "none in the range"
    print(f"marketcov: adjusted ({header['adjust']}) to the basis of {header['as_of']}: {said}", file=sys.stderr)
    skipped = header["skipped"]
    assert isinstance(skipped, list)
    for s in skipped:
        print(
            f"marketcov: note: not applied: {s['symbol']} {s['kind']} ex {s['ex_date']}: {s['reason']}", file=sys.stderr
        )


def _check_output(path: Path) -> None:
    """Refuse an output that cannot be a new or replaced file before reading anything."""
    if path.is_dir():
        raise ConfigError(f"--output {path} is a directory: give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"--output {path}: the directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise ConfigError(f"--output {path} is not a regular file")
    if path.resolve().is_relative_to("/proc") or path.resolve().is_relative_to("/sys"):
        raise ConfigError(f"--output {path} is a kernel file, not a place for bars")
