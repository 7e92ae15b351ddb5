"""Warehouse writes are idempotent and checksums survive the round trip, on SQLite and Postgres."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from marketcov_dagster.lib import warehouse as wh_module
from marketcov_dagster.lib.bars import canonical, validate_bars
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import PartitionResult, SessionNotStartedError, ingest_sessions
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.verify import CheckOutcome, verify_partition
from marketcov_dagster.lib.warehouse import SCHEMA_VERSION, Warehouse

XNYS = get_calendar("XNYS")
WEEK = XNYS.sessions(date(2024, 3, 4), date(2024, 3, 15))  # spans the 2024-03-10 DST change
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def ingest_results(
    wh: Warehouse, sessions: list[date], run_id: str = "run", vendor: SyntheticVendor | None = None
) -> list[PartitionResult]:
    return ingest_sessions(
        symbol="AAPL",
        interval="1m",
        calendar=XNYS,
        sessions=sessions,
        vendors=[vendor or SyntheticVendor(lambda _s: XNYS)],
        warehouse=wh,
        run_id=run_id,
        now=NOW,
    )


def ingest(wh: Warehouse, sessions: list[date], run_id: str = "run") -> dict[str, str]:
    return {r.session.isoformat(): r.checksum for r in ingest_results(wh, sessions, run_id)}


def test_same_range_twice_is_idempotent(warehouse: Warehouse) -> None:
    first = ingest(warehouse, WEEK, "run-1")
    rows = warehouse.count_bars("AAPL", "1m")
    assert rows == 390 * len(WEEK)
    second = ingest(warehouse, WEEK, "run-2")
    assert second == first
    assert warehouse.count_bars("AAPL", "1m") == rows
    lineage = warehouse.lineage("AAPL", "1m")
    assert len(lineage) == 2 * len(WEEK)
    assert lineage["previous_checksum"].isna().all()  # unchanged data is not a revision


def test_overlapping_ranges_neither_duplicate_nor_lose(warehouse: Warehouse) -> None:
    ingest(warehouse, WEEK[:6])
    ingest(warehouse, WEEK[3:])
    assert warehouse.count_bars("AAPL", "1m") == 390 * len(WEEK)
    single = ingest(warehouse, [WEEK[4]])
    whole = ingest(warehouse, WEEK)
    assert single[WEEK[4].isoformat()] == whole[WEEK[4].isoformat()]


def test_checksum_matches_after_round_trip(warehouse: Warehouse) -> None:
    sums = ingest(warehouse, WEEK)
    for d in WEEK:
        b = XNYS.bounds(d)
        back = warehouse.read_bars("AAPL", "1m", b.open_ms, b.close_ms)
        assert bars_checksum(back) == sums[d.isoformat()]


def test_bar_arrays_are_the_frames_columns_with_the_same_warm_up(warehouse: Warehouse) -> None:
    ingest(warehouse, WEEK)
    b = XNYS.bounds(WEEK[2])
    frame = warehouse.read_bars("AAPL", "1m", b.open_ms, b.close_ms, history=30)
    arrays = warehouse.read_bar_arrays("AAPL", "1m", b.open_ms, b.close_ms, ("ts", "close"), history=30)
    assert len(frame) == 390 + 30 and int(frame["ts"].iloc[30]) == b.open_ms
    assert arrays[:, 0].astype("int64").tolist() == frame["ts"].tolist()
    assert arrays[:, 1].tolist() == frame["close"].tolist()
    with pytest.raises(ValueError, match="not a bar column"):
        warehouse.read_bar_arrays("AAPL", "1m", b.open_ms, b.close_ms, ("ts", "1; DROP TABLE bars"))


def test_changed_vendor_data_is_recorded_as_revision(warehouse: Warehouse) -> None:
    before = ingest(warehouse, WEEK[:1])

    # the vendor now serves a revised bar for the same session
    class Revised(SyntheticVendor):
        def fetch_bars(self, *a, **k):  # type: ignore[no-untyped-def]
            df = super().fetch_bars(*a, **k)
            df.loc[0, "volume"] += 1
            return df

    res = ingest_results(warehouse, WEEK[:1], "r2", Revised(lambda _s: XNYS))
    assert res[0].checksum != before[WEEK[0].isoformat()]
    latest = warehouse.latest_lineage("AAPL", "1m", WEEK[0].isoformat())
    assert latest is not None and latest.previous_checksum == before[WEEK[0].isoformat()]
    assert warehouse.count_bars("AAPL", "1m") == 390


def test_future_session_is_refused_and_writes_nothing(sqlite_warehouse: Warehouse) -> None:
    nxt = XNYS.sessions(date(2024, 6, 3), date(2024, 6, 3))
    with pytest.raises(SessionNotStartedError, match="have not opened yet"):
        ingest(sqlite_warehouse, nxt)
    assert sqlite_warehouse.count_bars() == 0


def test_invalid_bars_are_dropped_and_logged(sqlite_warehouse: Warehouse) -> None:
    class Dirty(SyntheticVendor):
        def fetch_bars(self, *a, **k):  # type: ignore[no-untyped-def]
            df = super().fetch_bars(*a, **k)
            df.loc[5, "high"] = df.loc[5, "low"] - 1  # OHLC inconsistent
            df.loc[7, "volume"] = -3
            return df

    res = ingest_results(sqlite_warehouse, WEEK[:1], "r", Dirty(lambda _s: XNYS))
    assert res[0].rows == 388 and res[0].quarantined == 2
    log = sqlite_warehouse.remediation(symbols=["AAPL"])
    assert set(log["kind"]) == {"invalid_bars", "gap"}
    assert "ohlc_inconsistent: 1" in log.loc[log["kind"] == "invalid_bars", "detail"].iloc[0]
    assert set(log["session"]) == {WEEK[0].isoformat()}

    # the partition's checks say so: stored bars are clean, the quarantine is a warning
    def verify(min_completeness: float) -> list[CheckOutcome]:
        return verify_partition(
            warehouse=sqlite_warehouse,
            calendar=XNYS,
            symbol="AAPL",
            interval="1m",
            session=WEEK[0],
            min_completeness=min_completeness,
            now=NOW,
        )

    valid, count, checksum = verify(0.98)
    assert not valid.passed and valid.severity == "WARN" and "quarantined 2 bar(s)" in valid.description
    assert count.passed and checksum.passed  # 388 of 390 is above 98 %

    # a clean rewrite clears the warning
    ingest_results(sqlite_warehouse, WEEK[:1], "r2")
    again = verify_partition(
        warehouse=sqlite_warehouse,
        calendar=XNYS,
        symbol="AAPL",
        interval="1m",
        session=WEEK[0],
        min_completeness=1.0,
        now=NOW,
    )
    assert all(o.passed for o in again)


def test_validation_reports_each_problem() -> None:
    b = XNYS.bounds(WEEK[0])
    df = canonical(
        pd.DataFrame(
            {
                "ts": [b.open_ms, b.open_ms, b.open_ms + 60_000, b.close_ms, b.open_ms + 90_000],
                "open": [1.0, 1.0, float("nan"), 1.0, 1.0],
                "high": [2.0, 2.0, 2.0, 2.0, 2.0],
                "low": [0.5, 0.5, 0.5, 0.5, 0.5],
                "close": [1.5, 1.5, 1.5, 1.5, 1.5],
                "volume": [1.0, 1.0, 1.0, 1.0, 1.0],
            }
        )
    )
    r = validate_bars(df, [b], "1m")
    kinds = {p.kind: p.count for p in r.problems}
    assert kinds == {"nan": 1, "duplicate_ts": 2, "outside_session": 2}


def test_schema_is_versioned_and_reopening_is_harmless(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    a = Warehouse(url)
    b = Warehouse(url)
    assert a.schema_version() == b.schema_version() == SCHEMA_VERSION == 5


def test_version_1_warehouse_is_migrated_in_place_to_the_latest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a warehouse as the version-1 code left it, holding a bar
        wh_module.metadata.create_all(conn, tables=[wh_module.schema_version, *wh_module.MIGRATIONS[1]])
        conn.execute(wh_module.schema_version.insert().values(version=1, applied_at=datetime.now(UTC)))
        conn.execute(sa.text("ALTER TABLE partition_lineage DROP COLUMN basis"))  # added by version 5
        conn.execute(
            wh_module.bars.insert().values(
                symbol="OLD", interval="1d", ts=0, open=1.0, high=1.0, low=1.0, close=1.0, volume=0.0
            )
        )
    engine.dispose()
    wh = Warehouse(url)
    assert wh.schema_version() == 5 and wh.count_bars(symbol="OLD") == 1
    with wh.engine.connect() as conn:  # version 5 added the basis column to the old lineage table
        assert "basis" in {c["name"] for c in sa.inspect(conn).get_columns("partition_lineage")}
        assert conn.execute(sa.select(sa.func.count()).select_from(wh_module.corporate_actions)).scalar_one() == 0
    wh.record_vendor_call("alpaca", "ok", "HTTP 200", 200)
    assert wh.vendor_statuses()[0]["state"] == "ok"
    assert wh.latest_bar_ts([("OLD", "1d"), ("NEW", "1d")]) == {("OLD", "1d"): 0}
    with wh.engine.connect() as conn:  # the version-3 and version-4 tables exist
        assert conn.execute(sa.select(sa.func.count()).select_from(wh_module.incidents)).scalar_one() == 0
    assert wh.read_indicators("OLD", "1d", 0, 1).empty
    assert Warehouse(url).schema_version() == 5


def test_checksum_canonical_form() -> None:
    df = canonical(
        pd.DataFrame(
            {
                "ts": [2, 1],
                "open": [1.0, -0.0],
                "high": [1.0, 0.0],
                "low": [1.0, 0.0],
                "close": [1.0, 0.0],
                "volume": [0.0, 0.0],
            }
        )
    )
    flipped = df.iloc[::-1].reset_index(drop=True)
    zero = df.copy()
    zero.loc[zero["ts"] == 1, "open"] = 0.0
    assert bars_checksum(df) == bars_checksum(flipped) == bars_checksum(zero)
    assert len(bars_checksum(df)) == 64


def _take_tokens(url: str, n: int, out: Any) -> None:
    wh = Warehouse(url)
    out.put(sum(1 for _ in range(n) if wh.take_vendor_token("polygon", 60.0, 3, now=1000.0) == 0.0))


def test_token_bucket_is_atomic_across_processes(warehouse: Warehouse) -> None:
    """Two processes draining one bucket at the same instant get exactly its capacity between them."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take_tokens, args=(warehouse.url, 10, out)) for _ in range(2)]
    for p in procs:
        p.start()
    granted = out.get(timeout=120) + out.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
    assert granted == 3
    # a minute later the bucket has refilled to its capacity, not beyond
    assert [warehouse.take_vendor_token("polygon", 60.0, 3, now=1060.0) for _ in range(4)][:3] == [0.0] * 3
    warehouse.block_vendor("polygon", 2000.0, "HTTP 429 Retry-After 900s")
    assert warehouse.take_vendor_token("polygon", 60.0, 3, now=1500.0) == 500.0


class _OneMinuteShort(SyntheticVendor):
    """Calendar-true bars less one minute per session (a minute with no trades)."""

    def fetch_bars(self, symbol, interval, start, end):  # type: ignore[no-untyped-def]
        df = super().fetch_bars(symbol, interval, start, end)
        day = pd.to_datetime(df["ts"], unit="ms").dt.date
        first_of_day = day.ne(day.shift())
        return df[~first_of_day].reset_index(drop=True)


def test_the_same_gap_found_again_is_logged_once_and_one_within_tolerance_not_at_all(warehouse: Warehouse) -> None:
    vendor = _OneMinuteShort(lambda _s: XNYS)
    kw = {"symbol": "AAPL", "interval": "1m", "calendar": XNYS, "sessions": WEEK, "vendors": [vendor], "now": NOW}
    ingest_sessions(**kw, warehouse=warehouse, run_id="tolerant", min_completeness=0.98)  # type: ignore[arg-type]
    assert warehouse.remediation(kinds=["gap"]).empty  # 389 of 390 is complete at 0.98: not a gap
    for run in ("run-1", "run-2", "run-3"):
        ingest_sessions(**kw, warehouse=warehouse, run_id=run, min_completeness=1.0)  # type: ignore[arg-type]
    gaps = warehouse.remediation(kinds=["gap"])
    assert len(gaps) == len(WEEK), gaps[["session", "run_id"]]
    assert set(gaps["run_id"]) == {"run-1"}
    assert all(
        d == "389 of 390 expected bars, below min_completeness 1 (at least 390): partial" for d in gaps["detail"]
    )
    # a different state of the same session is logged; vendor errors are events, always logged
    warehouse.log_remediation(
        [
            {"symbol": "AAPL", "interval": "1m", "session": WEEK[0].isoformat(), "vendor": "synthetic", "kind": "gap"}
            | {"detail": "200 of 390 expected bars, below min_completeness 0.98 (at least 383): partial"}
        ]
        + [{"symbol": "AAPL", "interval": "1m", "vendor": "alpaca", "kind": "vendor_error", "detail": "HTTP 503"}] * 2
    )
    assert len(warehouse.remediation(kinds=["gap"])) == len(WEEK) + 1
    assert len(warehouse.remediation(kinds=["vendor_error"])) == 2


def test_a_refetch_removes_stored_bars_of_no_session_after_its_own(warehouse: Warehouse) -> None:
    friday, monday = date(2024, 3, 8), date(2024, 3, 11)
    kw = {"symbol": "AAPL", "interval": "1d", "calendar": XNYS, "now": NOW, "warehouse": warehouse}
    vendor = SyntheticVendor(lambda _s: XNYS)
    ingest_sessions(**kw, sessions=[friday, monday], vendors=[vendor], run_id="r1")  # type: ignore[arg-type]
    saturday_ms = int(datetime(2024, 3, 9, 14, 30, tzinfo=UTC).timestamp() * 1000)
    warehouse.execute(  # left by an earlier write, or by hand: a bar on a day the exchange was shut
        "INSERT INTO bars VALUES ('AAPL', '1d', :t, 10, 11, 9, 10, 100)", {"t": saturday_ms}
    )
    kept = {"symbol": "AAPL", "interval": "1d", "calendar": XNYS, "now": NOW, "min_completeness": 1.0}
    valid = verify_partition(warehouse=warehouse, session=friday, **kept)[0]  # type: ignore[arg-type]
    assert not valid.passed and valid.metadata["outside_sessions"] == 1
    before_monday = warehouse.read_bars("AAPL", "1d", *XNYS.partition_window_ms(monday))
    ingest_sessions(**kw, sessions=[friday], vendors=[vendor], run_id="r2")  # type: ignore[arg-type]
    assert warehouse.count_bars_in("AAPL", "1d", [(saturday_ms, saturday_ms + 1)]) == 0
    assert verify_partition(warehouse=warehouse, session=friday, **kept)[0].passed  # type: ignore[arg-type]
    assert warehouse.read_bars("AAPL", "1d", *XNYS.partition_window_ms(monday)).equals(before_monday)
    assert warehouse.count_bars(symbol="AAPL", interval="1d") == 2
