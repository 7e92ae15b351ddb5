"""Every benchmark runs at a small size (a smoke test: no timing is asserted, only that it runs
to completion and prints its comparison table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = [
    ["bench_ingest", "--smoke"],
    ["bench_backfill", "--smoke"],
    ["bench_coverage", "--smoke"],
    ["bench_coverage", "--scale", "2", "--calls", "2"],  # the scale point's generator, on PostgreSQL
    ["bench_freshness", "--smoke"],
    ["bench_load", "--smoke"],
    ["bench_derived", "--smoke"],
    ["bench_adjust", "--smoke"],  # adjusted reads, and /api/bars?adjust=all against a real `marketcov serve`
    ["bench_api", "--smoke"],  # locust against a real `marketcov serve`, on PostgreSQL
]


@pytest.mark.parametrize("bench", BENCHES, ids=" ".join)
def test_benchmark_runs_small(bench: list[str], tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "--scale" in bench or bench[0] == "bench_api":
        request.getfixturevalue("postgres_url")  # skips (or fails in CI) without a server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MARKETCOV_"))}
    env["DAGSTER_HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{bench[0]}", *bench[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 3 and "target" in table[0], out.stdout  # header, rule, at least one result
