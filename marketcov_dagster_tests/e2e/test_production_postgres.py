"""The production profile end to end: `scripts/services` starts dagster-webserver and
dagster-daemon on loopback with Dagster's storage and the warehouse on PostgreSQL; a partition
backfill over several assets is launched through GraphQL exactly as the UI launches it; the daemon
runs it, a schedule tick and sensor ticks; then the services stop cleanly."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.event_api import PartitionKeyFilter  # no public way to filter check history by partition

from marketcov_dagster.lib.alerts import list_incidents
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import (
    ROOT,
    base_env,
    free_port,
    graphql,
    marketcov,
    open_instance,
    ticks,
    wait_until,
)

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status numPartitions } }
}
"""
KEYS = [["ohlcv", "1d", "AAPL"], ["ohlcv", "1d", "BRK_2E_B"], ["ohlcv", "1m", "AAPL"]]


def services(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [str(ROOT / "scripts" / "services"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_backfill_from_the_ui_api_on_postgres_with_daemon(
    home: Path, postgres_url: str, postgres_dagster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(ROOT / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["intervals"]["1m"]["refresh_every_minutes"] = 1  # a schedule tick every minute, to observe one
    cfg["alerting"] = {"freshness_interval_seconds": 5}
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    env = base_env(home, postgres_url)
    env.update(DAGSTER_PG_URL=postgres_dagster_url, MARKETCOV_REPORT_DIR=str(home / "reports"))
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_dagster_url)  # this process reads the same instance
    port = free_port()
    xnys = get_calendar("XNYS")
    last = xnys.last_closed_session(datetime.now(UTC))
    assert last is not None
    sessions = xnys.sessions(last - timedelta(days=10), last)[-3:]
    log = home / "services" / "daemon.log"

    assert "webserver started" in services(
        ["start", "--host", "127.0.0.1", "--port", str(port), "--api-port", str(free_port())], env
    )
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
            180,
            "the webserver",
            home / "services" / "webserver.log",
        )
        params = {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": key},
                    "partitions": {"range": {"start": sessions[0].isoformat(), "end": sessions[-1].isoformat()}},
                }
                for key in KEYS
            ],
            "title": "e2e backfill",
        }
        launched = graphql(port, LAUNCH, {"params": params})["data"]["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def backfill_status() -> str:
            data = graphql(port, STATUS, {"id": backfill_id})["data"]["partitionBackfillOrError"]
            assert data["status"] not in ("FAILED", "CANCELED", "COMPLETED_FAILED"), data
            return str(data["status"])

        wait_until(lambda: backfill_status() == "COMPLETED_SUCCESS", 420, "the backfill", log)

        wh = Warehouse(postgres_url)
        minute_rows = sum(xnys.bounds(d).expected_bars("1m") for d in sessions)
        assert wh.count_bars("AAPL", "1d") == 3 and wh.count_bars("BRK.B", "1d") == 3
        # in the backfilled sessions: a schedule tick while XNYS trades may add today's minutes too
        window = (xnys.bounds(sessions[0]).open_ms, xnys.bounds(sessions[-1]).close_ms)
        assert len(wh.read_bars("AAPL", "1m", *window)) == minute_rows

        with open_instance(home) as instance:  # Dagster's own storage is the PostgreSQL database
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            key = dg.AssetKey(KEYS[2])
            # the backfilled sessions' own materializations (while XNYS trades, the minute schedule
            # of this test also materializes today's partition, every minute)
            wanted = [d.isoformat() for d in sessions]
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=wanted), limit=100
            ).records
            by_partition = {str(r.partition_key): r.asset_materialization.metadata for r in records}  # type: ignore[union-attr]
            assert sorted(by_partition) == wanted
            for d in sessions:
                md = by_partition[d.isoformat()]
                assert md["rows"].value == md["expected_rows"].value == xnys.bounds(d).expected_bars("1m")
                assert md["vendor"].value == "synthetic" and len(str(md["checksum"].value)) == 64
                hist = instance.event_log_storage.get_asset_check_execution_history(
                    dg.AssetCheckKey(key, "bar_count_matches_calendar"),
                    limit=1,
                    partition_filter=PartitionKeyFilter(key=d.isoformat()),
                )
                assert hist and hist[0].status.value == "SUCCEEDED"

            # the daemon ticks a schedule (the crypto minute refresh, every minute) and launches its run
            def scheduled_run() -> bool:
                done = [t for t in ticks(instance, "ohlcv_24_7_1m_schedule") if t.status.value == "SUCCESS"]
                return any(
                    (run := instance.get_run_by_id(rid)) is not None and run.is_success
                    for t in done
                    for rid in t.run_ids
                )

            wait_until(scheduled_run, 240, "a schedule tick's run", log)
            assert wh.count_bars("BTCUSDT", "1m") > 0
            # ... and evaluates the sensors: freshness (incidents in the warehouse) and the report refresh
            assert any(t.status.value == "SKIPPED" for t in ticks(instance, "freshness_alerts"))
            wait_until(lambda: (home / "reports" / "coverage.html").exists(), 180, "the coverage report", log)
        # assets never backfilled are "no data yet", not lag incidents: no alert storm on first start
        for incident in list_incidents(wh, open_only=True):
            assert wh.count_bars(incident["symbol"], incident["interval"]) > 0, incident

        cov = marketcov(["coverage", "--format", "json", "--symbols", "AAPL,BRK.B", "--intervals", "1d"], env)
        assert cov.returncode == 0, cov.stderr[-3000:]
        doc = {a["asset_key"]: a for a in json.loads(cov.stdout)["assets"]}
        for asset_key in ("ohlcv/1d/AAPL", "ohlcv/1d/BRK_2E_B"):
            assert doc[asset_key]["last_session"] == sessions[-1].isoformat() and doc[asset_key]["rows"] == 3
        wh.dispose()
    finally:
        stopped = services(["stop"], env)
    assert "daemon stopped" in stopped and "webserver stopped" in stopped
    assert services(["status"], env).split() == ["webserver", "stopped", "daemon", "stopped", "api", "stopped"]
