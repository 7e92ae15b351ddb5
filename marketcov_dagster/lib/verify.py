"""Per-partition verification against the warehouse, used by the Dagster asset checks.

The checks re-read the partitions' bars from the warehouse, so damage done after the write (lost,
duplicated or altered rows) is caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import required_bars, validate_bars
from marketcov_dagster.lib.calendars import SessionBounds, TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import expected_as_of
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.warehouse import LineageRow, Warehouse

BARS_ARE_VALID = "bars_are_valid"
BAR_COUNT_MATCHES_CALENDAR = "bar_count_matches_calendar"
CHECKSUM_MATCHES = "checksum_matches"
CHECK_NAMES = (BARS_ARE_VALID, BAR_COUNT_MATCHES_CALENDAR, CHECKSUM_MATCHES)


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    severity: str = "ERROR"  # or "WARN"


def verify_partitions(
    *,
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: Interval,
    sessions: Sequence[date],
    min_completeness: float,
    now: datetime | None = None,
) -> dict[str, list[CheckOutcome]]:
    """Run the three checks for each written session (one outcome per check, in CHECK_NAMES
    order), keyed by the session's ISO date. A session never written (no lineage row) is not
    materialized: it has nothing to check and is left out, rather than reported as a failure.
    The bars, lineage and remediation entries of the whole range are read with one query each,
    so a range of hundreds of partitions costs three round trips."""
    now = now or datetime.now(UTC)
    days = sorted(set(sessions))
    if not days:
        return {}
    windows = [calendar.partition_window_ms(d) for d in days]
    df = warehouse.read_bars(symbol, interval, windows[0][0], windows[-1][1])
    ts = df["ts"].to_numpy(dtype=np.int64)
    starts = np.array([w[0] for w in windows], dtype=np.int64)
    slot = np.searchsorted(starts, ts, side="right") - 1
    ends = np.array([w[1] for w in windows], dtype=np.int64)
    slot[(slot < 0) | (ts >= ends[np.clip(slot, 0, None)])] = -1  # bars between the partitions' windows
    keys = [d.isoformat() for d in days]
    lineage = warehouse.latest_lineage_many(symbol, interval, keys)
    log = warehouse.remediation(symbols=[symbol], intervals=[interval], kinds=["invalid_bars"])
    log = log[log["session"].isin(keys)]
    now_ms = int(now.timestamp() * 1000)
    out = {}
    for i, d in enumerate(days):
        part = df[slot == i].reset_index(drop=True)
        row = lineage.get(keys[i])
        if row is None:
            continue
        quarantined = log[(log["session"] == keys[i]) & (log["run_id"] == row.run_id)]
        out[keys[i]] = _outcomes(calendar.bounds(d), interval, part, row, quarantined, min_completeness, now_ms)
    return out


def verify_partition(
    *,
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: Interval,
    session: date,
    min_completeness: float,
    now: datetime | None = None,
) -> list[CheckOutcome]:
    """The three checks of one partition; none when it was never written."""
    return verify_partitions(
        warehouse=warehouse,
        calendar=calendar,
        symbol=symbol,
        interval=interval,
        sessions=[session],
        min_completeness=min_completeness,
        now=now,
    ).get(session.isoformat(), [])


def _outcomes(
    b: SessionBounds,
    interval: Interval,
    df: pd.DataFrame,
    lineage: LineageRow,
    quarantined: pd.DataFrame,
    min_completeness: float,
    now_ms: int,
) -> list[CheckOutcome]:
    report = validate_bars(df, [b], interval)
    valid_meta: dict[str, Any] = {"rows": len(df), "problems": [p.as_dict() for p in report.problems]}
    if not report.ok:
        valid = CheckOutcome(BARS_ARE_VALID, False, report.summary(), valid_meta)
    elif not quarantined.empty:
        # the stored bars are clean, but the vendor sent bad ones that were kept out: say so
        details = "; ".join(quarantined["detail"].astype(str))
        valid = CheckOutcome(
            BARS_ARE_VALID,
            False,
            f"stored bars valid, but the last write quarantined vendor bars: {details}",
            {**valid_meta, "quarantined_at_write": details},
            severity="WARN",
        )
    else:
        valid = CheckOutcome(BARS_ARE_VALID, True, report.summary(), valid_meta)

    expected = expected_as_of(b, interval, now_ms)
    full = b.expected_bars(interval)
    need = required_bars(expected, min_completeness)
    rows = len(df)
    count_ok = need <= rows <= expected
    count = CheckOutcome(
        BAR_COUNT_MATCHES_CALENDAR,
        count_ok,
        f"{rows} bars; calendar expects {expected} so far ({full} for the full session), at least {need} required",
        {
            "rows": rows,
            "expected_rows": expected,
            "session_expected_rows": full,
            "required_rows": need,
            "min_completeness": min_completeness,
        },
    )

    actual = bars_checksum(df)
    matches = lineage.checksum == actual
    checksum = CheckOutcome(
        CHECKSUM_MATCHES,
        matches,
        "warehouse bars match the checksum recorded at write time"
        if matches
        else f"warehouse bars hash to {actual[:12]}…, recorded {lineage.checksum[:12]}… "
        f"({rows} rows now, {lineage.rows} written)",
        {"recorded": lineage.checksum, "actual": actual, "rows_written": lineage.rows, "rows_now": rows},
    )
    return [valid, count, checksum]


def log_checksum_mismatches(
    warehouse: Warehouse, symbol: str, interval: Interval, outcomes: dict[str, list[CheckOutcome]], run_id: str
) -> None:
    """Record every failed ``checksum_matches`` in the remediation log."""
    warehouse.log_remediation(
        [
            {
                "symbol": symbol,
                "interval": interval,
                "session": session,
                "kind": "checksum_mismatch",
                "detail": o.description,
                "run_id": run_id,
            }
            for session, per_check in outcomes.items()
            for o in per_check
            if o.name == CHECKSUM_MATCHES and not o.passed
        ]
    )
