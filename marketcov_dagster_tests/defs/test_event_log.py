"""The embedded default's event log storage (``dagster.yaml``): Dagster's consolidated SQLite event
log with one connection pool per process. Every event still lands, every partition keeps its
check results, a live run's log still streams, and concurrency pools still work."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.event_api import PartitionKeyFilter  # no public way to filter check history by partition
from dagster._core.storage.event_log.sqlite import consolidated_sqlite_event_log as consolidated

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.instance.event_log import POOL_OVERFLOW, POOL_SIZE, HeldSqliteEventLogStorage
from marketcov_dagster.lib.verify import CHECK_NAMES
from marketcov_dagster_tests.conftest import small_universe

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 12, 6, 22, 0, tzinfo=UTC)
SESSIONS = ["2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02", "2024-12-03"]
AAPL_1M = dg.AssetKey(["ohlcv", "1m", "AAPL"])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst


def test_every_event_goes_through_the_held_pool_and_every_partition_keeps_its_checks(
    home: Path, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, HeldSqliteEventLogStorage)
    assert (home / "history" / "event_log.db").is_file()
    engine = storage.held_engine()
    opened: list[int] = []
    checkouts: list[int] = []
    sa.event.listen(engine, "connect", lambda *_: opened.append(1))
    sa.event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    # Dagster's own SQLite storage makes a new engine per event and per schema probe (has_table)
    engines: list[str] = []
    real_create = sa.create_engine

    def create_engine(url: str, **kwargs: Any) -> sa.Engine:
        engines.append(url)
        return real_create(url, **kwargs)

    monkeypatch.setattr(consolidated, "create_engine", create_engine)

    defs = build_definitions(small_universe(), now=NOW, warehouse=WarehouseResource(url=f"sqlite:///{tmp_path / 'w'}"))
    result = defs.resolve_job_def("ohlcv_xnys_1m_job").execute_in_process(
        instance=instance,
        asset_selection=[AAPL_1M],
        tags={RANGE_START_TAG: SESSIONS[0], RANGE_END_TAG: SESSIONS[-1]},
    )
    assert result.success
    events = len(instance.all_logs(result.run_id))
    # Dagster still stores through _connect (the one method overridden), on a handful of connections
    assert events > 30 and len(checkouts) >= events
    assert len(opened) <= POOL_SIZE + POOL_OVERFLOW and engines == []
    stored = instance.fetch_materializations(AAPL_1M, limit=100).records
    assert sorted(r.partition_key for r in stored) == SESSIONS  # type: ignore[type-var]
    for session in SESSIONS:
        for check in CHECK_NAMES:
            [execution] = storage.get_asset_check_execution_history(
                dg.AssetCheckKey(AAPL_1M, check), limit=1, partition_filter=PartitionKeyFilter(key=session)
            )
            assert execution.status.value == "SUCCEEDED", (session, check)


def test_a_table_is_probed_once_and_a_missing_one_again(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, HeldSqliteEventLogStorage)
    assert storage.has_table("asset_check_executions") and storage.has_asset_key_index_cols()
    assert not storage.has_asset_key_col("marketcov_no_such_column")

    def no_more_probes(*_: object) -> None:
        raise AssertionError("probed the schema again")

    monkeypatch.setattr(sa, "inspect", no_more_probes)
    monkeypatch.setattr(type(storage.held_engine().dialect), "has_table", no_more_probes)
    assert storage.supports_asset_checks and storage.has_asset_key_index_cols()  # remembered
    monkeypatch.undo()
    assert not storage.has_table("marketcov_probe")
    with storage.held_engine().begin() as conn:
        conn.exec_driver_sql("CREATE TABLE marketcov_probe (x INTEGER)")
    assert storage.has_table("marketcov_probe")  # a missing table is not remembered as missing


@dg.op
def _noop() -> None:
    pass


@dg.job
def _tiny() -> None:
    _noop()


def test_a_live_run_log_streams_from_the_write_ahead_log(instance: dg.DagsterInstance) -> None:
    run = instance.create_run_for_job(job_def=_tiny)
    seen: list[str] = []
    arrived = threading.Event()

    def callback(entry: dg.EventLogEntry, _cursor: str) -> None:
        seen.append(entry.message)
        if entry.message == "second":
            arrived.set()

    instance.report_engine_event("first", run)
    instance.event_log_storage.watch(run.run_id, None, callback)
    try:
        instance.report_engine_event("second", run)  # committed to history/event_log.db-wal
        assert arrived.wait(15), f"the watcher saw {seen}"
    finally:
        instance.event_log_storage.end_watch(run.run_id, callback)
    assert seen.index("first") < seen.index("second")


def test_concurrency_pools_are_kept(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert storage.supports_global_concurrency_limits
    storage.set_concurrency_slots("vendor_alpaca", 2)
    info = storage.get_concurrency_info("vendor_alpaca")
    assert info.slot_count == 2 and info.active_slot_count == 0


def test_the_event_log_lives_in_the_folder_the_instance_is_loaded_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(elsewhere))  # not the folder loaded below: not used
    home = tmp_path / "loaded"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(job_def=_tiny)
        instance.report_engine_event("hello", run)
        assert [e.message for e in instance.all_logs(run.run_id)] == ["hello"]
    assert (home / "history" / "event_log.db").is_file() and not any(elsewhere.iterdir())
    explicit = HeldSqliteEventLogStorage(dagster_home=str(tmp_path / "explicit"))  # as a bench configures it
    assert Path(explicit.get_db_path()) == tmp_path / "explicit" / "history" / "event_log.db"
    explicit.dispose()
