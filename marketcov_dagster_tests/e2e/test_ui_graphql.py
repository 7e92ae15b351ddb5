"""What the UI shows: a real dagster-webserver on loopback, queried over the GraphQL API its pages
use, after a range run written by the CLI. Each partition shows its own metadata."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster_tests.e2e.conftest import base_env, free_port, graphql, marketcov

ROOT = Path(__file__).resolve().parents[2]
QUERY = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 20) {
        partition
        runId
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


CHECKS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              __typename
              ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
              ... on AssetCheckDefaultPartitionStatuses { succeededPartitions failedPartitions inProgressPartitions }
            }
          }
        }
      }
    }
  }
}
"""


def test_ui_shows_each_partitions_own_metadata(home: Path) -> None:
    env = base_env(home, None)
    # three closed sessions, named: with no dates a backfill also takes the session trading now,
    # so the count would depend on the hour the test runs
    xnys = get_calendar("XNYS")
    last = xnys.last_closed_session(datetime.now(UTC))
    assert last is not None
    first = xnys.sessions(last - timedelta(days=10), last)[-3]
    span = ["--start", first.isoformat(), "--end", last.isoformat()]
    out = marketcov(["backfill", "--symbols", "AAPL", "--intervals", "1m", *span], env)
    assert out.returncode == 0, out.stderr[-2000:]
    port = free_port()
    web = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env={**env, "MARKETCOV_CONFIG": env["MARKETCOV_CONFIG"]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                data = graphql(port, QUERY, {"path": ["ohlcv", "1m", "AAPL"]})
                if data.get("data", {}).get("assetOrError", {}).get("assetMaterializations"):
                    break
            except OSError:
                pass
            time.sleep(1)
        mats = data["data"]["assetOrError"]["assetMaterializations"]
        assert len(mats) == 3 and len({m["runId"] for m in mats}) == 1  # one range run
        seen = {}
        for m in mats:
            md = {e["label"]: e.get("intValue", e.get("text")) for e in m["metadataEntries"]}
            assert md["first_bar"].startswith(m["partition"])
            assert md["rows"] == md["expected_rows"] > 0
            seen[m["partition"]] = md["checksum"]
        assert len(set(seen.values())) == 3

        # after the range run, the check partitions view shows each partition's three results
        checks = graphql(port, CHECKS, {"path": ["ohlcv", "1m", "AAPL"]})
        by_name = {
            c["name"]: c["partitionStatuses"]
            for c in checks["data"]["assetNodeOrError"]["assetChecksOrError"]["checks"]
        }
        assert set(by_name) == {"bars_are_valid", "bar_count_matches_calendar", "checksum_matches"}, checks
        for name, statuses in by_name.items():
            assert statuses is not None, (name, checks)
            ranges = statuses.get("ranges", [])
            succeeded = [r for r in ranges if r["status"] == "SUCCEEDED"]
            assert succeeded and all(r["status"] == "SUCCEEDED" for r in ranges), (name, statuses)
            assert succeeded[0]["startKey"] == min(seen) and succeeded[-1]["endKey"] == max(seen), (name, statuses)
    finally:
        web.terminate()
        web.wait(timeout=30)
