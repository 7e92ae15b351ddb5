"""Coverage never loses an event committed out of storage-id order (PostgreSQL hands out ids at
insert, not at commit): a real PostgreSQL instance, one materialization held in an open
transaction while a later one commits and coverage reads past it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.history import cache_for, coverage_for
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster_tests.conftest import small_universe

NOW = datetime(2024, 12, 6, 22, 0, tzinfo=UTC)
AAPL_1D = dg.AssetKey(["ohlcv", "1d", "AAPL"])


def test_an_event_committed_after_a_later_id_is_still_read(
    tmp_path: Path, postgres_dagster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    universe = small_universe()
    spec = next(s for s in universe.specs if s.key_path == tuple(AAPL_1D.path))
    defs = build_definitions(universe, now=NOW, warehouse=WarehouseResource(url=f"sqlite:///{tmp_path / 'wh.sqlite'}"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {postgres_dagster_url}\n"
    )
    job = defs.resolve_job_def("ohlcv_xnys_1d_job")
    engine = sa.create_engine(postgres_dagster_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert job.execute_in_process(instance=instance, asset_selection=[AAPL_1D], partition_key="2024-12-02").success
        [cov] = coverage_for(instance, [spec], NOW)
        assert cov.covered_sessions == 1

        # a writer inserts the 12-03 materialization (taking the next id) but has not committed
        slow = engine.connect()
        txn = slow.begin()
        held_id = slow.execute(
            sa.text(
                "INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition) "
                "SELECT run_id, replace(event, '2024-12-02', '2024-12-03'), dagster_event_type, timestamp, step_key, "
                "asset_key, '2024-12-03' FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
                "AND partition = '2024-12-02' RETURNING id"
            )
        ).scalar_one()
        # meanwhile another writer commits 12-04 with a later id, and coverage reads past the held one
        assert job.execute_in_process(instance=instance, asset_selection=[AAPL_1D], partition_key="2024-12-04").success
        [cov] = coverage_for(instance, [spec], NOW)
        newest, _ = cache_for(instance).marks(AAPL_1D.to_user_string())
        assert newest is not None and newest > held_id
        assert cov.covered_sessions == 2  # 12-03 is not visible yet

        txn.commit()  # the slow writer commits: its event has an id older than what was read
        slow.close()
        [cov] = coverage_for(instance, [spec], NOW)
        assert cov.covered_sessions == 3, "an event committed out of id order was skipped"
        assert cov.segments[-1].start == "2024-12-02" and cov.segments[-1].end == "2024-12-04"

        # once every event read is older than the settling time, nothing is read again
        monkeypatch.setattr("marketcov_dagster.defs.history.SETTLE_SECONDS", 0.0)
        coverage_for(instance, [spec], NOW)
        newest, settled = cache_for(instance).marks(AAPL_1D.to_user_string())
        assert settled == newest
        reads: list[object] = []

        def counting(*args: object, **kwargs: object) -> None:
            reads.append(args)

        monkeypatch.setattr(instance, "fetch_materializations", counting)
        [cov] = coverage_for(instance, [spec], NOW)
        assert reads == [] and cov.covered_sessions == 3
    engine.dispose()
