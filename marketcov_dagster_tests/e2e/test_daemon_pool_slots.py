"""A daemon-launched run whose run worker is killed (``kill -9``) frees its pool slots: the code
server marks the run failed, and the daemon's run monitoring then frees what the run held, so the
vendor's pool never stays jammed. Real processes: ``marketcov ui``, a backfill launched over
GraphQL as the UI launches it, the run worker killed mid-request."""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import yaml

from marketcov_dagster_tests.e2e.conftest import base_env, free_port, graphql, open_instance, start_ui, wait_until
from marketcov_dagster_tests.e2e.test_production_postgres import LAUNCH
from marketcov_dagster_tests.fakes.vendor_servers import FakeBinance, Fault
from marketcov_dagster_tests.vendors.conftest import FAST

KEY = ["ohlcv", "1m", "BTCUSDT"]
POOL = "vendor_binance"


def _held(instance: dg.DagsterInstance) -> set[str]:
    return instance.event_log_storage.get_concurrency_info(POOL).active_run_ids


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", event.message or "")
        if found:
            return int(found.group(1))
    return None


def test_a_killed_run_worker_frees_its_pool_slots_through_the_daemon(home: Path) -> None:
    cfg = {
        "intervals": {"1m": {"window_days": 30}},
        "asset_classes": {
            "crypto": {"calendar": "24/7", "vendors": ["binance"], "intervals": ["1m"], "symbols": ["BTCUSDT"]}
        },
        "vendors": {"binance": {**FAST, "read_timeout": 120}},
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    dagster_yaml = yaml.safe_load((home / "dagster.yaml").read_text())
    # the project's run monitoring, polled every few seconds instead of every two minutes
    dagster_yaml["run_monitoring"].update(poll_interval_seconds=3, free_slots_after_run_end_seconds=3)
    (home / "dagster.yaml").write_text(yaml.safe_dump(dagster_yaml))
    last = datetime.now(UTC).date() - timedelta(days=5)
    port = free_port()
    log = home / "ui.log"
    with FakeBinance() as server:
        server.script = [Fault(delay=60)] * 1_000  # every request hangs: the run holds its slot
        env = {**base_env(home, None), "MARKETCOV_BINANCE_BASE_URL": server.url}
        ui = start_ui(env, home, port, log)
        try:
            params = {
                "partitionsByAssets": [
                    {
                        "assetKey": {"path": KEY},
                        "partitions": {
                            "range": {"start": (last - timedelta(days=1)).isoformat(), "end": last.isoformat()}
                        },
                    }
                ],
                "title": "pool slot test",
            }
            launched = graphql(port, LAUNCH, {"params": params})["data"]["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched

            with open_instance(home) as instance:
                wait_until(
                    lambda: len(_held(instance)) == 1 and bool(server.requests), 180, "a run holding the pool", log
                )
                (run_id,) = _held(instance)
                pid = _worker_pid(instance, run_id)
                assert pid is not None, [e.message for e in instance.all_logs(run_id)]
                os.kill(pid, signal.SIGKILL)

                def run_failed() -> bool:
                    run = instance.get_run_by_id(run_id)
                    return run is not None and run.status == dg.DagsterRunStatus.FAILURE

                wait_until(run_failed, 120, "the code server to mark the killed run failed", log)
                wait_until(lambda: not _held(instance), 120, "the daemon to free the killed run's slot", log)
                info = instance.event_log_storage.get_concurrency_info(POOL)
                assert not info.claimed_slots and not [p for p in info.pending_steps if p.run_id == run_id]
        finally:
            ui.send_signal(signal.SIGTERM)
            ui.wait(timeout=60)
