"""Per-partition verification against the warehouse, used by the Dagster asset checks.

The checks re-read the partitions' bars from the warehouse, so damage done after the write (lost,
duplicated or altered rows) is caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import required_bars, ts_iso, validate_bars
from marketcov_dagster.lib.calendars import SessionBounds, TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import expected_as_of
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.warehouse import LineageRow, Verdict, Warehouse

BARS_ARE_VALID = "bars_are_valid"
BAR_COUNT_MATCHES_CALENDAR = "bar_count_matches_calendar"
CHECKSUM_MATCHES = "checksum_matches"
CHECK_NAMES = (BARS_ARE_VALID, BAR_COUNT_MATCHES_CALENDAR, CHECKSUM_MATCHES)
DAILY_MATCHES_MINUTES = "daily_matches_minutes"  # daily assets whose symbol has minute bars too (crosscheck)
MATCHES_SOURCE = "matches_source"  # resampled assets: equal to the candles of their source (resample)
OUTSIDE_SESSIONS = "outside_sessions"  # metadata key and remediation kind


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
    now_ms = int(now.timestamp() * 1000)
    windows = calendar.partition_windows_ms(days, interval)
    # read on to the next session that has opened (or to the end of time when none has): bars on
    # the days between sessions, and bars dated in the future, belong to no partition
    until = _read_until(calendar, days[-1], now_ms, interval)
    df = warehouse.read_bars(symbol, interval, windows[0][0], until)
    unended_from = (now_ms if interval == "1d" else calendar.last_ended_start_ms(interval, now)) + 1
    if until < 2**62:  # bars not ended by now, wherever they lie, count against the range's last session
        future = warehouse.read_bars(symbol, interval, max(until, unended_from), 2**62)
        df = pd.concat([df, future], ignore_index=True) if len(future) else df
    ts = df["ts"].to_numpy(dtype=np.int64)
    starts = np.array([w[0] for w in windows], dtype=np.int64)
    after = np.searchsorted(starts, ts, side="right") - 1  # the last session starting at or before
    ends = np.array([w[1] for w in windows], dtype=np.int64)
    unfinished = ts >= unended_from
    stray = (ts >= ends[after]) | unfinished  # outside every partition window, or not ended by now
    slot = np.where(stray, -1, after)
    keys = [d.isoformat() for d in days]
    lineage = warehouse.latest_lineage_many(symbol, interval, keys)
    log = warehouse.remediation(symbols=[symbol], intervals=[interval], kinds=["invalid_bars"])
    log = log[log["session"].isin(keys)]
    # each session's bars by position: the owned bars' slots never decrease (bars are sorted)
    owned = np.flatnonzero(slot >= 0)
    edges = np.searchsorted(slot[owned], np.arange(len(days) + 1))
    stray_at = np.flatnonzero(stray)
    out = {}
    for i, d in enumerate(days):
        row = lineage.get(keys[i])
        if row is None:
            continue
        part = df.iloc[owned[edges[i] : edges[i + 1]]].reset_index(drop=True)
        quarantined = log[(log["session"] == keys[i]) & (log["run_id"] == row.run_id)] if len(log) else log
        outcomes = _outcomes(calendar.bounds(d), interval, part, row, quarantined, min_completeness, now_ms)
        out[keys[i]] = _with_strays(outcomes, ts[stray_at[after[stray_at] == i]], now_ms)
    return out


def _read_until(calendar: TradingCalendar, last: date, now_ms: int, interval: Interval) -> int:
    following = calendar.sessions(last + timedelta(days=1), last + timedelta(days=40))
    if following and calendar.bounds(following[0]).open_ms <= now_ms:
        return calendar.partition_window_ms(following[0], interval)[0]
    return 2**62


def _with_strays(outcomes: list[CheckOutcome], strays: np.ndarray, now_ms: int) -> list[CheckOutcome]:
    """Bars stored after a session but outside every session (a Saturday bar in XNYS), or not ended
    by now (dated in the future), fail that session's ``bars_are_valid``: no partition owns them,
    so no other check would ever see them."""
    if len(strays) == 0:
        return outcomes
    valid = outcomes[0]
    examples = [ts_iso(int(t)) for t in strays[:5]]
    future = int((strays > now_ms).sum())
    detail = (
        f"{len(strays)} stored bar(s) after this session belong to no session"
        + (f" ({future} dated in the future)" if future else "")
        + f": {', '.join(examples[:3])}"
    )
    failed = CheckOutcome(
        BARS_ARE_VALID,
        False,
        f"{detail}; {valid.description}" if not valid.passed else detail,
        {
            **valid.metadata,
            OUTSIDE_SESSIONS: len(strays),
            "outside_sessions_examples": examples,
        },
    )
    return [failed, *outcomes[1:]]


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


def record_verdicts(
    warehouse: Warehouse, symbol: str, interval: Interval, outcomes: dict[str, list[CheckOutcome]], run_id: str
) -> None:
    """Keep each outcome as the partition's latest verdict of that check (what derived data asks)."""
    warehouse.record_verdicts(
        symbol,
        interval,
        [
            Verdict(session, o.name, o.passed, o.severity, o.description)
            for session, per_check in outcomes.items()
            for o in per_check
        ],
        run_id,
    )


def log_check_findings(
    warehouse: Warehouse, symbol: str, interval: Interval, outcomes: dict[str, list[CheckOutcome]], run_id: str
) -> None:
    """Record every failed ``checksum_matches``, ``daily_matches_minutes`` and ``matches_source`` and every
    bar outside the sessions in the
    remediation log (the same finding again adds nothing: see ``Warehouse.log_remediation``)."""
    entries = []
    for session, per_check in outcomes.items():
        for o in per_check:
            if o.name == CHECKSUM_MATCHES and not o.passed:
                kind = "checksum_mismatch"
            elif o.name == BARS_ARE_VALID and o.metadata.get(OUTSIDE_SESSIONS):
                kind = OUTSIDE_SESSIONS
            elif o.name == DAILY_MATCHES_MINUTES and not o.passed:
                kind = "interval_mismatch"
            elif o.name == MATCHES_SOURCE and not o.passed:
                kind = "source_mismatch"
            else:
                continue
            entries.append(
                {
                    "symbol": symbol,
                    "interval": interval,
                    "session": session,
                    "kind": kind,
                    "detail": o.description,
                    "run_id": run_id,
                }
            )
    warehouse.log_remediation(entries)
