"""Coverage: what we have, where the holes are, computed per asset against the calendar.

Inputs are plain facts (present partitions and their row counts, from Dagster's materialization
history); the output is a JSON-ready report. A *segment* is a maximal run of consecutive expected
sessions that are present and complete; non-sessions (weekends, holidays) never break a run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from marketcov_dagster.lib.bars import required_bars
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.texttable import render
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.windows import expected_sessions


@dataclass(frozen=True)
class Segment:
    start: str
    end: str
    sessions: int
    rows: int


@dataclass(frozen=True)
class AssetCoverage:
    asset_key: str
    symbol: str
    interval: str
    calendar: str
    expected_sessions: int
    covered_sessions: int
    coverage_pct: float
    first_session: str | None
    last_session: str | None
    rows: int
    segments: list[Segment]
    missing: list[str]
    partial: list[str]
    expired_sessions: int = 0  # sessions the retention job deleted: outside the window, not missing
    expired_before: str | None = None
    first_expected: str | None = None  # the window's first and last closed sessions
    last_expected: str | None = None
    # materialized, but with no write left in the warehouse (bars gone): counted as missing, listed here
    lost: list[str] = field(default_factory=list)


@dataclass
class Scan:
    """Sessions sorted into complete runs (segments), missing and partial ones."""

    segments: list[Segment]
    missing: list[str]
    partial: list[str]
    present: list[str]
    rows: int


def scan_sessions(
    spec: AssetSpecification, calendar: TradingCalendar, sessions: Sequence[date], rows_by_partition: Mapping[str, int]
) -> Scan:
    """``sessions`` (in order) split by what ``rows_by_partition`` holds: a session with no entry
    is missing, one below ``min_completeness`` of its calendar bar count partial."""
    out = Scan([], [], [], [], 0)
    run: list[tuple[str, int]] = []

    def close_run() -> None:
        if run:
            out.segments.append(Segment(run[0][0], run[-1][0], len(run), sum(r for _, r in run)))
            run.clear()

    for d in sessions:
        key = d.isoformat()
        if key not in rows_by_partition:
            out.missing.append(key)
            close_run()
            continue
        out.present.append(key)
        rows = int(rows_by_partition[key])
        out.rows += rows
        if rows < required_bars(calendar.bounds(d).expected_bars(spec.interval), spec.min_completeness):
            out.partial.append(key)
            close_run()
            continue
        run.append((key, rows))
    close_run()
    return out


def asset_coverage(
    spec: AssetSpecification,
    calendar: TradingCalendar,
    present: set[str],
    rows_by_partition: Mapping[str, int],
    now: datetime,
    lost: Collection[str] = (),
) -> AssetCoverage:
    """Coverage from the materialized partitions ``present`` (rows each); ``lost`` ones (bars gone
    from the warehouse) are missing, never covered."""
    expected = expected_sessions(calendar, spec.window_days, now)
    present = set(present) - set(lost)
    scan = scan_sessions(spec, calendar, expected, {p: int(rows_by_partition.get(p, 0)) for p in present})
    covered = sum(s.sessions for s in scan.segments)
    first_expected = expected[0].isoformat() if expected else None
    # sessions materialized once but now before the window: the retention job deletes their bars
    expired = [p for p in present if first_expected and p < first_expected] if spec.expire else []
    return AssetCoverage(
        asset_key=spec.key_str,
        symbol=spec.symbol,
        interval=spec.interval,
        calendar=spec.calendar,
        expected_sessions=len(expected),
        covered_sessions=covered,
        coverage_pct=round(100.0 * covered / len(expected), 2) if expected else 100.0,
        first_session=scan.present[0] if scan.present else None,
        last_session=scan.present[-1] if scan.present else None,
        rows=scan.rows,
        segments=scan.segments,
        missing=scan.missing,
        partial=scan.partial,
        expired_sessions=len(expired),
        expired_before=first_expected if expired else None,
        first_expected=first_expected,
        last_expected=expected[-1].isoformat() if expected else None,
        lost=sorted(lost),
    )


def report(assets: Sequence[AssetCoverage], generated_at: datetime) -> dict[str, object]:
    expected = sum(a.expected_sessions for a in assets)
    covered = sum(a.covered_sessions for a in assets)
    return {
        "generated_at": generated_at.isoformat(),
        "assets": [
            {
                **asdict(a),
                "segment_count": len(a.segments),
                "missing_count": len(a.missing),
                "partial_count": len(a.partial),
            }
            for a in assets
        ],
        "summary": {
            "assets": len(assets),
            "complete_assets": sum(1 for a in assets if a.covered_sessions == a.expected_sessions),
            "expected_sessions": expected,
            "covered_sessions": covered,
            "coverage_pct": round(100.0 * covered / expected, 2) if expected else 100.0,
            "missing_sessions": sum(len(a.missing) for a in assets),
            "partial_sessions": sum(len(a.partial) for a in assets),
            "expired_sessions": sum(a.expired_sessions for a in assets),
            "rows": sum(a.rows for a in assets),
        },
    }


_TABLE_COLUMNS = (
    "asset_key",
    "coverage_pct",
    "covered",
    "segment_count",
    "missing_count",
    "partial_count",
    "first",
    "last",
    "rows",
    "expired",
)


def _row(a: AssetCoverage) -> list[str]:
    return [
        a.asset_key,
        f"{a.coverage_pct:.2f}",
        f"{a.covered_sessions}/{a.expected_sessions}",
        str(len(a.segments)),
        str(len(a.missing)),
        str(len(a.partial)),
        a.first_session or "-",
        a.last_session or "-",
        str(a.rows),
        str(a.expired_sessions),
    ]


def to_table(assets: Sequence[AssetCoverage]) -> str:
    return render(_TABLE_COLUMNS, [_row(a) for a in assets])


SUMMARY_CSV_COLUMNS = (
    "asset_key",
    "symbol",
    "interval",
    "calendar",
    "expected_sessions",
    "covered_sessions",
    "coverage_pct",
    "segment_count",
    "missing_count",
    "partial_count",
    "first_session",
    "last_session",
    "rows",
    "expired_sessions",
)
CSV_VIEWS = ("summary", "segments", "sessions")


def to_csv(assets: Sequence[AssetCoverage], view: str = "summary") -> str:
    """CSV in one of three shapes, each column meaning what it means in the table and the JSON:
    ``summary`` one row per asset with counts; ``segments`` one row per segment; ``sessions`` one
    row per missing or partial session (the long forms of the JSON's lists)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ident = ("asset_key", "symbol", "interval")
    if view == "segments":
        w.writerow([*ident, "start", "end", "sessions", "rows"])
        w.writerows(
            [a.asset_key, a.symbol, a.interval, g.start, g.end, g.sessions, g.rows] for a in assets for g in a.segments
        )
    elif view == "sessions":
        w.writerow([*ident, "session", "state"])
        for a in assets:
            rows = [(d, "missing") for d in a.missing] + [(d, "partial") for d in a.partial]
            w.writerows([a.asset_key, a.symbol, a.interval, d, state] for d, state in sorted(rows))
    elif view == "summary":
        w.writerow(SUMMARY_CSV_COLUMNS)
        for a in assets:
            w.writerow(
                [
                    a.asset_key,
                    a.symbol,
                    a.interval,
                    a.calendar,
                    a.expected_sessions,
                    a.covered_sessions,
                    a.coverage_pct,
                    len(a.segments),
                    len(a.missing),
                    len(a.partial),
                    a.first_session or "",
                    a.last_session or "",
                    a.rows,
                    a.expired_sessions,
                ]
            )
    else:
        raise ValueError(f"unknown CSV view {view!r}; one of {list(CSV_VIEWS)}")
    return buf.getvalue()
