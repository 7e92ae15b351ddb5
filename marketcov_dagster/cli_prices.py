"""``marketcov actions`` (one symbol's corporate actions and the factors in force) and
``marketcov revisions`` (stored partitions a re-fetch changed; ``accept``/``reject`` decide a held one)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Literal

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.jsonout import dumps
from marketcov_dagster.lib.prices.ledger import adjustments
from marketcov_dagster.lib.prices.report import ACTION_COLUMNS, RANGE_COLUMNS, actions_report
from marketcov_dagster.lib.texttable import render
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.warehouse import Warehouse, existing_or_empty


def symbol_actions(spec: AssetSpecification, now: datetime | None = None) -> dict[str, object]:
    """The report of ``spec``'s symbol, into the basis of the last closed session."""
    cal = get_calendar(spec.calendar)
    now = now or datetime.now(UTC)
    basis = cal.last_closed_session(now) or now.date()
    wh = existing_or_empty()
    try:
        applied, skipped = adjustments(wh, cal, spec.symbol, "1d", "all")
        return actions_report(spec.symbol, cal, wh.ledger_entries(spec.symbol), applied, skipped, basis)
    finally:
        wh.dispose()


def show_actions(spec: AssetSpecification, fmt: str) -> int:
    report = symbol_actions(spec)
    actions, ranges = report["actions"], report["ranges"]
    assert isinstance(actions, list) and isinstance(ranges, list)
    if fmt == "json":
        print(dumps(report))
        return 0
    if fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([*ACTION_COLUMNS, "in_force"])
        for a in actions:
            w.writerow([a.get(c) for c in ACTION_COLUMNS] + [a["in_force"]])
        return 0
    if not actions:
        print(f"no corporate actions of {spec.symbol} in the ledger (marketcov backfill refreshes it)")
        return 0
    print(render(list(ACTION_COLUMNS), [[a.get(c) for c in ACTION_COLUMNS] for a in actions]))
    print()
    print(f"factors into the prices of {report['basis']}:")
    print(render(list(RANGE_COLUMNS), [[r[c] for c in RANGE_COLUMNS] for r in ranges]))
    return 0


REVISION_COLUMNS = (
    "revised_at",
    "asset_key",
    "session",
    "vendor",
    "bars_changed",
    "bars_added",
    "bars_removed",
    "max_rel_change",
    "status",
    "old_checksum",
    "new_checksum",
    "run_id",
)


def show_revisions(specs: Sequence[AssetSpecification], since: date | None, limit: int | None, fmt: str) -> int:
    wh = existing_or_empty()
    try:
        found = wh.revisions(
            since=datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None,
            symbols=sorted({s.symbol for s in specs}),
            intervals=sorted({s.interval for s in specs}),
            limit=limit,
        )
    finally:
        wh.dispose()
    rows = [r.as_dict() for r in found]
    if fmt == "json":
        print(dumps(rows))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(REVISION_COLUMNS)
        w.writerows([r[c] for c in REVISION_COLUMNS] for r in rows)
    elif not rows:
        print("no revisions recorded: no re-fetch has changed a stored partition")
    else:
        print(render(list(REVISION_COLUMNS), [[r[c] for c in REVISION_COLUMNS] for r in rows]))
    return 0


def decide_revision(spec: AssetSpecification, day: date, decision: Literal["accept", "reject"]) -> int:
    """Accept (the vendor's bars go in force) or reject (the stored ones stay) the pending revision
    of one partition; both versions are kept. One line either way; exit 1 when none is pending."""
    from marketcov_dagster.lib.warehouse import RevisionDecisionError

    cal = get_calendar(spec.calendar)
    if not cal.is_session(day):
        print(f"marketcov: error: --partition {day}: not a {spec.calendar} session", file=sys.stderr)
        return 2
    window = cal.partition_windows_ms([day], spec.interval)[0]
    wh = Warehouse()
    try:
        rev = wh.decide_revision(spec.symbol, spec.interval, day.isoformat(), decision, window, f"revision-{decision}")
    except RevisionDecisionError as e:
        print(f"marketcov: error: {e}", file=sys.stderr)
        return 1
    finally:
        wh.dispose()
    kept = "the vendor's bars are in force" if decision == "accept" else "the stored bars stay"
    print(
        f"{rev.status} revision {rev.id} of {spec.key_str} {rev.session} ({rev.vendor}): {kept}; "
        f"both versions are kept (marketcov backfill re-runs the checks)"
    )
    return 0
