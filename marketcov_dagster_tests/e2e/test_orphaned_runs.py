"""A backfill whose process dies (SIGKILL), or is stopped (SIGTERM, SIGINT), leaves no worker
behind and no run STARTED forever: real processes, killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from marketcov_dagster.defs.orphans import build_orphan_sensor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, marketcov
from marketcov_dagster_tests.fakes.vendor_servers import FakeBinance, Fault
from marketcov_dagster_tests.vendors.conftest import FAST

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
LAST = datetime.now(UTC).date() - timedelta(days=10)
FIRST = LAST - timedelta(days=5)
RANGE_ARGS = ["--start", FIRST.isoformat(), "--end", LAST.isoformat()]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def slow_backfill(home: Path) -> Iterator[tuple[subprocess.Popen[str], list[int], dict[str, str]]]:
    """``marketcov backfill --workers 2`` against a slow vendor, caught mid-run with both workers busy."""
    cfg = {
        "intervals": {"1m": {"window_days": 90}},
        "asset_classes": {
            "crypto": {"calendar": "24/7", "vendors": ["binance"], "intervals": ["1m"], "symbols": SYMBOLS}
        },
        "vendors": {"binance": FAST},
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    with FakeBinance() as server:
        server.script = [Fault(delay=0.3)] * 10_000
        env = {**base_env(home, None), "MARKETCOV_BINANCE_BASE_URL": server.url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketcov_dagster.cli", "backfill", "--workers", "2", *RANGE_ARGS],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and len({r.query["symbol"] for r in server.requests}) < 2:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        workers = [p for p in _children(proc.pid) if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) >= 2, workers
        yield proc, workers, env
        if proc.poll() is None:
            proc.kill()


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def _wait_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_sigkill_leaves_no_worker_and_the_next_command_fails_its_runs(slow_backfill, home: Path) -> None:  # type: ignore[no-untyped-def]
    proc, workers, env = slow_backfill
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _wait_gone(workers) == [], "a worker outlived its killed parent"
    started = [r for r in _runs(home) if r.status == dg.DagsterRunStatus.STARTED]
    assert len(started) == 2, [r.status for r in _runs(home)]

    out = marketcov(["coverage"], env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.count("lost its process; marked failed") == 2, out.stderr
    runs = _runs(home)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.FAILURE}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for r in runs:
            failure = instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert len(failure) == 1 and "ended without finishing it" in failure[0].message, failure
    assert marketcov(["coverage"], env).stderr.count("marked failed") == 0, "reported twice"
    Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}").dispose()


def test_the_daemon_sensor_fails_runs_whose_process_is_gone(slow_backfill, home: Path) -> None:  # type: ignore[no-untyped-def]
    proc, workers, _env = slow_backfill
    os.kill(workers[0], signal.SIGKILL)  # a worker crashes: its run can never finish
    _out, err = proc.communicate(timeout=120)  # the parent reports the broken worker and ends
    assert proc.returncode == 1 and "worker failed" in _out, (_out[-2000:], err[-2000:])
    assert _wait_gone(workers) == []
    assert any(r.status == dg.DagsterRunStatus.STARTED for r in _runs(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = build_orphan_sensor().evaluate_tick(dg.build_sensor_context(instance=instance))
        assert "orphaned run(s) failed" in (result.skip_message or "") and "marked 0" not in (result.skip_message or "")
        again = build_orphan_sensor().evaluate_tick(dg.build_sensor_context(instance=instance))
        assert "marked 0 orphaned run(s) failed" in (again.skip_message or "")
    assert all(r.status != dg.DagsterRunStatus.STARTED for r in _runs(home))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_request_ends_with_one_line_no_worker_and_no_started_run(slow_backfill, home: Path, sig: int) -> None:  # type: ignore[no-untyped-def]
    proc, workers, _env = slow_backfill
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("marketcov:")]
    assert lines[-1].startswith("marketcov: backfill interrupted"), err[-2000:]
    assert _wait_gone(workers) == []
    assert all(r.status != dg.DagsterRunStatus.STARTED for r in _runs(home)), [r.status for r in _runs(home)]
