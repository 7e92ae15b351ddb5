"""Per-partition verification against the warehouse, used by the Dagster asset checks.

Each function re-reads the partition's bars from the warehouse, so damage done after the write
(lost, duplicated or altered rows) is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from marketcov_dagster.lib.bars import required_bars, validate_bars
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import expected_as_of
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.warehouse import Warehouse

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
    """Run the three checks for one partition; returns one outcome per check, in CHECK_NAMES order."""
    now = now or datetime.now(UTC)
    b = calendar.bounds(session)
    df = warehouse.read_bars(symbol, interval, *calendar.partition_window_ms(session))

    lineage = warehouse.latest_lineage(symbol, interval, session.isoformat())
    report = validate_bars(df, [b], interval)
    quarantined = (
        warehouse.remediation(
            symbols=[symbol],
            intervals=[interval],
            kinds=["invalid_bars"],
            session=session.isoformat(),
            run_id=lineage.run_id,
        )
        if lineage is not None
        else None
    )
    valid_meta: dict[str, Any] = {"rows": len(df), "problems": [p.as_dict() for p in report.problems]}
    if not report.ok:
        valid = CheckOutcome(BARS_ARE_VALID, False, report.summary(), valid_meta)
    elif quarantined is not None and not quarantined.empty:
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

    expected = expected_as_of(b, interval, int(now.timestamp() * 1000))
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
    if lineage is None:
        checksum = CheckOutcome(
            CHECKSUM_MATCHES, False, "no lineage row: partition was never written", {"actual": actual}
        )
    else:
        checksum = CheckOutcome(
            CHECKSUM_MATCHES,
            lineage.checksum == actual,
            "warehouse bars match the checksum recorded at write time"
            if lineage.checksum == actual
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
