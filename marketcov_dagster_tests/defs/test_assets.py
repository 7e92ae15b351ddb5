"""Assets, range runs and checks through a real Dagster instance and a real SQLite warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy  # what FreshnessPolicy.time_window gives
from dagster._core.event_api import PartitionKeyFilter  # no public way to filter check history by partition

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.history import cache_for, coverage_for
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.verify import BAR_COUNT_MATCHES_CALENDAR, BARS_ARE_VALID, CHECK_NAMES, CHECKSUM_MATCHES
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.conftest import small_universe

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

NOW = datetime(2024, 12, 6, 22, 0, tzinfo=UTC)
# Thanksgiving week: 11-28 holiday, 11-29 early close (210 minutes)
RANGE = ("2024-11-25", "2024-12-03")
SESSIONS = ["2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02", "2024-12-03"]
AAPL_1M = dg.AssetKey(["ohlcv", "1m", "AAPL"])
BRK_1D = dg.AssetKey(["ohlcv", "1d", "BRK_2E_B"])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[dg.Definitions, dg.DagsterInstance, Warehouse]]:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(small_universe(), now=NOW, warehouse=WarehouseResource(url=url))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        yield defs, instance, Warehouse(url)


def run_range(
    defs: dg.Definitions, instance: dg.DagsterInstance, job: str, keys: list[dg.AssetKey], start: str, end: str
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, asset_selection=keys, tags={RANGE_START_TAG: start, RANGE_END_TAG: end}
    )


def check_status(instance: dg.DagsterInstance, key: dg.AssetKey, check: str, partition: str) -> str:
    hist = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, check), limit=1, partition_filter=PartitionKeyFilter(key=partition)
    )
    return hist[0].status.value if hist else "NONE"


def test_code_location_shape() -> None:
    defs = build_definitions(small_universe(), now=NOW)
    keys = {a.key for a in defs.resolve_all_asset_specs()}
    assert AAPL_1M in keys and BRK_1D in keys and dg.AssetKey(["ohlcv", "1m", "BTCUSDT"]) in keys
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key == BRK_1D)
    # the UI's freshness state: every asset has a policy whose window spans the calendar's closures
    assert all(s.freshness_policy is not None for s in defs.resolve_all_asset_specs() if s.key.path[0] == "ohlcv")
    policy = spec.freshness_policy
    assert isinstance(policy, TimeWindowFreshnessPolicy) and policy.fail_window.to_timedelta().days >= 4
    assert spec.metadata["symbol"] == "BRK.B" and spec.group_name == "ohlcv_1d"
    assert spec.tags["exchange"] == "XNYS" and spec.tags["asset_class"] == "us_equity"
    names = {j.name for j in defs.jobs}  # type: ignore[union-attr]
    groups = {f"ohlcv_{c}_{i}_{k}job" for c in ("xnys", "24_7") for i in ("1d", "1m") for k in ("", "verify_")}
    assert names == groups | {"retention_job", "coverage_report_job", "reconcile_job", "corporate_actions_job"}
    assets_def = defs.resolve_assets_def(AAPL_1M)
    assert assets_def.backfill_policy == dg.BackfillPolicy.single_run()
    check_names = {k.name for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == AAPL_1M}
    assert check_names == set(CHECK_NAMES)
    pdef = assets_def.partitions_def
    assert pdef is not None
    with dg.partition_loading_context(effective_dt=NOW):
        keys_ = pdef.get_partition_keys()
    assert "2024-11-28" not in keys_ and "2024-11-30" not in keys_ and "2024-11-29" in keys_
    assert keys_[-1] == "2024-12-06"  # today's session is a partition


def test_range_run_records_per_partition_metadata_and_checks(env) -> None:  # type: ignore[no-untyped-def]
    defs, instance, wh = env
    result = run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], *RANGE)
    assert result.success
    recs = instance.fetch_materializations(AAPL_1M, limit=100).records
    by_key = {r.partition_key: r.asset_materialization.metadata for r in recs}  # type: ignore[union-attr]
    assert sorted(by_key) == SESSIONS
    assert by_key["2024-11-29"]["rows"].value == 210 and by_key["2024-11-29"]["expected_rows"].value == 210
    assert by_key["2024-11-27"]["rows"].value == 390
    for k, md in by_key.items():
        lineage = wh.latest_lineage("AAPL", "1m", k)
        assert lineage is not None and md["checksum"].value == lineage.checksum
        assert md["vendor"].value == "synthetic" and md["first_bar"].value.startswith(k)
        assert set(md) >= {"rows", "expected_rows", "first_bar", "last_bar", "checksum", "vendor", "fetched_at"}
    assert len({md["checksum"].value for md in by_key.values()}) == len(SESSIONS)
    # one run, one vendor request per asset: every partition came from the same run
    assert {r.run_id for r in recs} == {result.run_id}
    for k in SESSIONS:
        for check in CHECK_NAMES:
            assert check_status(instance, AAPL_1M, check, k) == "SUCCEEDED", (k, check)


def test_single_partition_run(env) -> None:  # type: ignore[no-untyped-def]
    defs, instance, wh = env
    result = defs.resolve_job_def("ohlcv_xnys_1d_job").execute_in_process(
        instance=instance, asset_selection=[BRK_1D], partition_key="2024-11-29"
    )
    assert result.success
    md = instance.get_latest_materialization_event(BRK_1D).asset_materialization.metadata  # type: ignore[union-attr]
    assert md["rows"].value == 1
    assert check_status(instance, BRK_1D, CHECKSUM_MATCHES, "2024-11-29") == "SUCCEEDED"
    assert wh.count_bars("BRK.B", "1d") == 1


def test_each_check_fails_on_injected_damage(env) -> None:  # type: ignore[no-untyped-def]
    defs, instance, wh = env
    assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], *RANGE).success
    b = {s: wh.latest_lineage("AAPL", "1m", s) for s in SESSIONS}
    # 11-25: alter one price -> checksum mismatch only
    wh.execute(
        "UPDATE bars SET close = close + 0.01 WHERE symbol='AAPL' AND interval='1m' AND ts = :ts",
        {"ts": b["2024-11-25"].first_bar},
    )  # type: ignore[union-attr]
    # 11-26: delete 30 bars -> count and checksum fail
    wh.execute(
        "DELETE FROM bars WHERE symbol='AAPL' AND interval='1m' AND ts >= :a AND ts < :b",
        {"a": b["2024-11-26"].first_bar, "b": b["2024-11-26"].first_bar + 30 * 60_000},
    )  # type: ignore[union-attr]
    # 11-27: an inverted bar (high below low) -> validity and checksum fail
    wh.execute(
        "UPDATE bars SET high = low - 1 WHERE symbol='AAPL' AND interval='1m' AND ts = :ts",
        {"ts": b["2024-11-27"].last_bar},
    )  # type: ignore[union-attr]
    # 11-29: a stray extra bar off the minute grid -> validity, count and checksum fail
    wh.execute(
        "INSERT INTO bars SELECT symbol, interval, ts + 1, open, high, low, close, volume FROM bars "
        "WHERE symbol='AAPL' AND interval='1m' AND ts = :ts",
        {"ts": b["2024-11-29"].first_bar},
    )  # type: ignore[union-attr]
    # an exact duplicate cannot exist at all: the primary key refuses it
    with pytest.raises(sa.exc.IntegrityError):
        wh.execute(
            "INSERT INTO bars SELECT * FROM bars WHERE symbol='AAPL' AND ts = :ts", {"ts": b["2024-12-02"].first_bar}
        )  # type: ignore[union-attr]

    verify = run_range(defs, instance, "ohlcv_xnys_1m_verify_job", [], *RANGE)
    assert verify.success  # failed checks do not fail the run; the sensor of issue 4 mails them
    expected_failures = {
        "2024-11-25": {CHECKSUM_MATCHES},
        "2024-11-26": {CHECKSUM_MATCHES, BAR_COUNT_MATCHES_CALENDAR},
        "2024-11-27": {CHECKSUM_MATCHES, BARS_ARE_VALID},
        "2024-11-29": {CHECKSUM_MATCHES, BARS_ARE_VALID, BAR_COUNT_MATCHES_CALENDAR},
        "2024-12-02": set(),
        "2024-12-03": set(),
    }
    for k, failing in expected_failures.items():
        for check in CHECK_NAMES:
            want = "FAILED" if check in failing else "SUCCEEDED"
            assert check_status(instance, AAPL_1M, check, k) == want, (k, check)

    # rematerializing the damaged range heals it
    assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], *RANGE).success
    for k in SESSIONS:
        assert check_status(instance, AAPL_1M, CHECKSUM_MATCHES, k) == "SUCCEEDED"
    assert wh.count_bars("AAPL", "1m") == 5 * 390 + 210


def test_coverage_reads_history_incrementally(env) -> None:  # type: ignore[no-untyped-def]
    defs, instance, _wh = env
    spec = next(s for s in small_universe().specs if s.symbol == "AAPL" and s.interval == "1m")
    assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], "2024-11-25", "2024-11-27").success
    [cov] = coverage_for(instance, [spec], now=NOW)
    assert cov.segments[-1].end == "2024-11-27" and cov.rows == 3 * 390
    cache = cache_for(instance)
    first_cursor, _settled = cache.marks(AAPL_1M.to_user_string())
    assert first_cursor is not None
    assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], "2024-11-29", "2024-12-02").success
    [cov] = coverage_for(instance, [spec], now=NOW)
    # the holiday 11-28 does not break the run; the early close counts as complete with 210 rows
    assert cov.segments[-1].start == "2024-11-25" and cov.segments[-1].end == "2024-12-02"
    assert cov.rows == 4 * 390 + 210 and cov.partial == []
    second_cursor, _settled = cache.marks(AAPL_1M.to_user_string())
    assert second_cursor is not None and second_cursor > first_cursor
    # only the new events were read: the cached rows of the first run are untouched
    assert set(cache.rows(AAPL_1M.to_user_string())) == {
        "2024-11-25",
        "2024-11-26",
        "2024-11-27",
        "2024-11-29",
        "2024-12-02",
    }
    cache.close()


@pytest.mark.parametrize("verify_range", [RANGE, ("2024-11-29", "2024-11-29")])
def test_verify_of_partitions_never_written_is_not_a_failure(env, verify_range: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    defs, instance, wh = env
    assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], "2024-11-29", "2024-11-29").success
    job = defs.resolve_job_def("ohlcv_xnys_1m_verify_job")  # AAPL and BRK.B; BRK.B was never written
    verify = job.execute_in_process(
        instance=instance, tags={RANGE_START_TAG: verify_range[0], RANGE_END_TAG: verify_range[1]}
    )
    assert verify.success
    brk_1m = dg.AssetKey(["ohlcv", "1m", "BRK_2E_B"])
    for check in CHECK_NAMES:
        assert check_status(instance, AAPL_1M, check, "2024-11-29") == "SUCCEEDED"
        for k in SESSIONS:
            # no evaluation: never run, or planned by the run and left without a result (the UI
            # shows it as skipped once the run has ended)
            assert check_status(instance, brk_1m, check, k) in ("NONE", "PLANNED"), (check, k)
    failed = [
        e
        for e in verify.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed  # type: ignore[union-attr]
    ]
    assert failed == []
    assert wh.remediation(kinds=["checksum_mismatch"]).empty


def test_bars_outside_every_session_fail_a_check_and_are_logged(env) -> None:  # type: ignore[no-untyped-def]
    defs, instance, wh = env
    assert run_range(defs, instance, "ohlcv_xnys_1m_job", [AAPL_1M], *RANGE).success
    saturday = int(datetime(2024, 11, 30, 15, 0, tzinfo=UTC).timestamp() * 1000)  # XNYS is closed
    future = int(datetime(2099, 1, 5, 15, 0, tzinfo=UTC).timestamp() * 1000)  # a bar that cannot exist yet
    for ts in (saturday, future):
        wh.execute("INSERT INTO bars VALUES ('AAPL', '1m', :ts, 1, 1, 1, 1, 1)", {"ts": ts})
    for _ in range(2):  # the same finding twice is logged once
        assert run_range(defs, instance, "ohlcv_xnys_1m_verify_job", [], *RANGE).success
    # the Saturday bar follows Friday 11-29; the future bar follows the range's last session
    assert check_status(instance, AAPL_1M, BARS_ARE_VALID, "2024-11-29") == "FAILED"
    assert check_status(instance, AAPL_1M, BARS_ARE_VALID, "2024-12-03") == "FAILED"
    for k in ("2024-11-25", "2024-11-26", "2024-11-27", "2024-12-02"):
        assert check_status(instance, AAPL_1M, BARS_ARE_VALID, k) == "SUCCEEDED", k
    for check in (BAR_COUNT_MATCHES_CALENDAR, CHECKSUM_MATCHES):  # the partitions' own bars are intact
        assert check_status(instance, AAPL_1M, check, "2024-11-29") == "SUCCEEDED"
    log = wh.remediation(kinds=["outside_sessions"]).sort_values("session")
    assert list(log["session"]) == ["2024-11-29", "2024-12-03"]
    assert "2024-11-30T15:00:00+00:00" in log["detail"].iloc[0] and "dated in the future" in log["detail"].iloc[1]
