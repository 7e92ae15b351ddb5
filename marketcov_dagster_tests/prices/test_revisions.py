"""Revisions in the open, against a loopback Polygon that corrects bars it served before: under
``accept`` the new bars are stored and the revision recorded with its figures; under ``hold`` the
stored bars stay, the vendor's are kept as pending, a check fails until accept or reject, and
neither version is lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.ingest import PartitionResult, ingest_sessions
from marketcov_dagster.lib.prices.held import pending_revision_check
from marketcov_dagster.lib.verify import verify_partitions
from marketcov_dagster.lib.warehouse import RevisionDecisionError, Warehouse
from marketcov_dagster.lib.warehouse.revisions import diff_bars
from marketcov_dagster_tests.fakes.vendor_servers import FakePolygon
from marketcov_dagster_tests.vendors.conftest import client

XNYS = get_calendar("XNYS")
SESSIONS = XNYS.sessions(date(2025, 3, 3), date(2025, 3, 7))
REVISED = SESSIONS[2]
NOW = datetime(2025, 3, 10, tzinfo=UTC)


@pytest.fixture
def wh() -> Iterator[Warehouse]:
    w = Warehouse("sqlite://")
    yield w
    w.dispose()


@pytest.fixture
def polygon() -> Iterator[FakePolygon]:
    with FakePolygon() as p:
        yield p


def fetch(wh: Warehouse, polygon: FakePolygon, run_id: str, on_revision: str = "accept") -> dict[date, PartitionResult]:
    results = ingest_sessions(
        symbol="AAPL",
        interval="1d",
        calendar=XNYS,
        sessions=SESSIONS,
        vendors=[client("polygon", polygon, wh)],
        warehouse=wh,
        run_id=run_id,
        now=NOW,
        on_revision=on_revision,
    )
    return {r.session: r for r in results}


def stored(wh: Warehouse, day: date) -> pd.DataFrame:
    return wh.read_bars("AAPL", "1d", *XNYS.partition_windows_ms([day], "1d")[0])


def revise(polygon: FakePolygon, day: date, factor: float) -> None:
    polygon.revised[XNYS.bounds(day).open_ms] = factor  # the vendor corrects that session's bar


def test_a_rerun_with_the_same_bars_is_no_revision(wh: Warehouse, polygon: FakePolygon) -> None:
    fetch(wh, polygon, "first")
    again = fetch(wh, polygon, "second")
    assert wh.revisions() == [] and not any(r.metadata()["revised"] for r in again.values())


def test_under_accept_the_new_bars_are_stored_and_the_revision_recorded(wh: Warehouse, polygon: FakePolygon) -> None:
    first = fetch(wh, polygon, "first")
    old_close = float(stored(wh, REVISED)["close"][0])
    revise(polygon, REVISED, 1.02)
    second = fetch(wh, polygon, "second")
    (rev,) = wh.revisions()
    assert (rev.symbol, rev.interval, rev.session, rev.vendor, rev.run_id) == (
        "AAPL",
        "1d",
        REVISED.isoformat(),
        "polygon",
        "second",
    )
    assert (rev.bars_changed, rev.bars_added, rev.bars_removed, rev.status) == (1, 0, 0, "accepted")
    assert rev.max_rel_change == pytest.approx(0.02, rel=1e-6)
    assert rev.old_checksum == first[REVISED].checksum and rev.new_checksum == second[REVISED].checksum
    assert float(stored(wh, REVISED)["close"][0]) == pytest.approx(old_close * 1.02)
    meta = second[REVISED].metadata()
    assert meta["revised"] is True and meta["revision_bars_changed"] == 1 and meta["revision_status"] == "accepted"
    assert [d for d, r in second.items() if r.metadata()["revised"]] == [REVISED]
    assert wh.revision_counts() == {"1d": 1}
    assert "revised AAPL 1d 2025-03-05 (polygon): 1 changed" in rev.describe()


def test_under_hold_the_stored_bars_stay_until_a_decision_and_both_versions_are_kept(
    wh: Warehouse, polygon: FakePolygon
) -> None:
    first = fetch(wh, polygon, "first", "hold")
    before = stored(wh, REVISED)
    revise(polygon, REVISED, 0.97)
    second = fetch(wh, polygon, "second", "hold")
    (rev,) = wh.revisions()
    assert rev.status == "pending" and rev.decided_at is None
    pd.testing.assert_frame_equal(stored(wh, REVISED), before)  # nothing replaced
    held = second[REVISED]
    assert held.kept_existing and held.checksum == first[REVISED].checksum
    assert held.metadata()["revision_status"] == "pending"
    vendor_side = wh.held_bars(rev.id)
    assert float(vendor_side["close"][0]) == pytest.approx(float(before["close"][0]) * 0.97)
    # the stored bars still match their recorded checksum; the pending check fails and says how to decide
    checks = verify_partitions(
        warehouse=wh, calendar=XNYS, symbol="AAPL", interval="1d", sessions=SESSIONS, min_completeness=1.0, now=NOW
    )
    assert all(o.passed for o in checks[REVISED.isoformat()])
    pending = pending_revision_check(wh, "AAPL", "1d", SESSIONS)
    assert [k for k, o in pending.items() if not o.passed] == [REVISED.isoformat()]
    assert "marketcov revisions accept" in pending[REVISED.isoformat()].description
    # the vendor serving the same correction again records nothing new
    fetch(wh, polygon, "third", "hold")
    assert [r.id for r in wh.revisions()] == [rev.id]

    window = XNYS.partition_windows_ms([REVISED], "1d")[0]
    accepted = wh.decide_revision("AAPL", "1d", REVISED.isoformat(), "accept", window, "ops", now=NOW)
    assert accepted.status == "accepted" and accepted.decided_at == NOW
    pd.testing.assert_frame_equal(stored(wh, REVISED), vendor_side)  # the vendor's bars in force
    pd.testing.assert_frame_equal(wh.held_bars(rev.id, "stored"), before)  # the superseded ones kept
    assert wh.latest_lineage_many("AAPL", "1d", [REVISED.isoformat()])[REVISED.isoformat()].checksum == rev.new_checksum
    after = verify_partitions(
        warehouse=wh, calendar=XNYS, symbol="AAPL", interval="1d", sessions=[REVISED], min_completeness=1.0, now=NOW
    )
    assert all(o.passed for o in after[REVISED.isoformat()])
    assert pending_revision_check(wh, "AAPL", "1d", [REVISED])[REVISED.isoformat()].passed
    with pytest.raises(RevisionDecisionError, match="no revision pending"):
        wh.decide_revision("AAPL", "1d", REVISED.isoformat(), "reject", window, "ops")


def test_a_rejected_revision_keeps_the_stored_bars_and_is_not_raised_again(wh: Warehouse, polygon: FakePolygon) -> None:
    fetch(wh, polygon, "first", "hold")
    before = stored(wh, REVISED)
    revise(polygon, REVISED, 1.5)
    fetch(wh, polygon, "second", "hold")
    (rev,) = wh.revisions()
    window = XNYS.partition_windows_ms([REVISED], "1d")[0]
    assert wh.decide_revision("AAPL", "1d", REVISED.isoformat(), "reject", window, "ops").status == "rejected"
    pd.testing.assert_frame_equal(stored(wh, REVISED), before)
    assert len(wh.held_bars(rev.id)) == 1  # the vendor's version is kept
    fetch(wh, polygon, "third", "hold")  # the vendor still serves it: already rejected, nothing new
    assert [r.status for r in wh.revisions()] == ["rejected"]
    revise(polygon, REVISED, 1.1)  # a different correction is a new pending revision
    fetch(wh, polygon, "fourth", "hold")
    assert [r.status for r in wh.revisions()] == ["pending", "rejected"]


def test_a_session_growing_at_its_end_is_not_a_revision() -> None:
    cols = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}
    old = pd.DataFrame({"ts": np.arange(0, 5) * 60_000, **cols})
    grown = pd.DataFrame({"ts": np.arange(0, 8) * 60_000, **cols})
    assert not diff_bars(old, grown).is_revision
    inserted = pd.concat([grown.iloc[:2], grown.iloc[3:]]), grown  # a bar filled in the middle
    assert diff_bars(*inserted).is_revision and diff_bars(*inserted).added == 1
    removed = diff_bars(grown, old)
    assert removed.is_revision and removed.removed == 3
    changed = grown.assign(close=np.where(grown["ts"] == 120_000, 1.65, 1.5))
    d = diff_bars(grown, changed)
    assert d.changed == 1 and d.max_rel_change == pytest.approx(0.1)
