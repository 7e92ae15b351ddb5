"""A backfill whose process dies (SIGKILL), or is stopped (SIGTERM, SIGINT), leaves no worker
behind and no run STARTED forever: real processes, killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from marketcov_dagster.defs.orphans import build_orphan_sensor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, marketcov
from marketcov_dagster_tests.fakes.vendor_servers import FakeBinance, FakeVendorServer, Fault
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


Started = tuple[subprocess.Popen[str], list[int], dict[str, str], FakeVendorServer]


@contextmanager
def _slow_backfill(home: Path, extra_env: dict[str, str] | None = None, delay: float = 10) -> Iterator[Started]:
    """``marketcov backfill --workers 2`` against a slow vendor, caught mid-run with both workers
    waiting for an answer (so both hold a slot of the pool vendor_binance, limit 2). Each request
    takes ``delay`` seconds: the backfill cannot have finished when the test acts on it, however
    loaded the machine (a state, not a race); ``server.script = []`` lets the rest go fast."""
    cfg = {
        "intervals": {"1m": {"window_days": 90}},
        "asset_classes": {
            "crypto": {"calendar": "24/7", "vendors": ["binance"], "intervals": ["1m"], "symbols": SYMBOLS}
        },
        "vendors": {"binance": {**FAST, "read_timeout": max(FAST["read_timeout"], 3 * delay)}},
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    with FakeBinance() as server:
        server.script = [Fault(delay=delay)] * 10_000
        env = {**base_env(home, None), "MARKETCOV_BINANCE_BASE_URL": server.url, **(extra_env or {})}
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
        try:
            yield proc, workers, env, server
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def slow_backfill(home: Path) -> Iterator[Started]:
    with _slow_backfill(home) as (proc, workers, env, server):
        yield proc, workers, env, server


def _held(home: Path) -> dict[str, set[str]]:
    """Pool -> the runs holding its slots."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        return {k: storage.get_concurrency_info(k).active_run_ids for k in storage.get_concurrency_keys()}


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def _wait_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_sigkill_leaves_no_worker_and_the_next_command_fails_its_runs(slow_backfill, home: Path) -> None:  # type: ignore[no-untyped-def]
    proc, workers, env, _server = slow_backfill
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _wait_gone(workers) == [], "a worker outlived its killed parent"
    started = [r for r in _runs(home) if r.status == dg.DagsterRunStatus.STARTED]
    assert len(started) == 2, [r.status for r in _runs(home)]

    out = marketcov(["coverage"], env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.count("lost its process; marked failed and its pool slots freed") == 2, out.stderr
    runs = _runs(home)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.FAILURE}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for r in runs:
            failure = instance.all_logs(r.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert len(failure) == 1 and "ended without finishing it" in failure[0].message, failure
    assert marketcov(["coverage"], env).stderr.count("marked failed") == 0, "reported twice"
    Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}").dispose()


def test_the_daemon_sensor_fails_runs_whose_process_is_gone(slow_backfill, home: Path) -> None:  # type: ignore[no-untyped-def]
    proc, workers, _env, server = slow_backfill
    os.kill(workers[0], signal.SIGKILL)  # a worker crashes: its run can never finish
    server.script = []  # the other worker then finishes its run soon
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
    proc, workers, _env, _server = slow_backfill
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=180)  # a state, not a time: generous for a loaded machine
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("marketcov:")]
    assert lines[-1].startswith("marketcov: backfill interrupted"), err[-2000:]
    assert _wait_gone(workers) == []
    assert all(r.status != dg.DagsterRunStatus.STARTED for r in _runs(home)), [r.status for r in _runs(home)]


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_a_killed_backfill_frees_its_pool_slots_so_the_next_one_completes(
    home: Path, storage: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra: dict[str, str] = {}
    if storage == "postgres":
        shutil.copy(ROOT / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
        extra["DAGSTER_PG_URL"] = request.getfixturevalue("postgres_dagster_url")
        monkeypatch.setenv("DAGSTER_PG_URL", extra["DAGSTER_PG_URL"])  # this process reads the same instance
    with _slow_backfill(home, extra) as (proc, workers, env, server):
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert _wait_gone(workers) == []
        killed = {r.run_id for r in _runs(home)}
        assert _held(home).get("vendor_binance") == killed and len(killed) == 2, "the dead runs hold the pool"

        server.script = []  # the vendor answers at once now
        out = marketcov(["backfill", *RANGE_ARGS], env)
        assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
        assert out.stderr.count("lost its process; marked failed and its pool slots freed") == 2, out.stderr
        assert "FAILED" not in out.stdout and " ok" in out.stdout, out.stdout
    assert _held(home).get("vendor_binance", set()) == set()
    statuses = {r.run_id: r.status for r in _runs(home)}
    assert {statuses[r] for r in killed} == {dg.DagsterRunStatus.FAILURE}
    assert dg.DagsterRunStatus.SUCCESS in set(statuses.values())


def test_a_run_waiting_for_a_pool_slot_says_so_and_who_holds_it(home: Path) -> None:
    with _slow_backfill(home) as (first, _workers, env, server):  # holds the pool for minutes
        holders = {r.run_id[:8] for r in _runs(home)}
        earlier = [
            "--start",
            (FIRST - timedelta(days=10)).isoformat(),
            "--end",
            (FIRST - timedelta(days=5)).isoformat(),
        ]
        second = subprocess.Popen(  # other partitions (the same ones would be skipped), the same vendor pool
            [sys.executable, "-m", "marketcov_dagster.cli", "backfill", *earlier],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert second.stderr is not None
        line = ""
        deadline = time.time() + 120
        while time.time() < deadline and "waits for a slot" not in line:
            line = second.stderr.readline()
            assert line or second.poll() is None, ("the second backfill did not wait", second.communicate())
        assert "waits for a slot in pool vendor_binance (2 of 2 held by runs " in line, line
        assert all(h in line for h in holders) and "(STARTED)" in line, (line, holders)
        status = marketcov(["status"], env)  # the status says so too
        pool_line = [x for x in status.stdout.splitlines() if x.startswith("pool vendor_binance:")]
        assert pool_line and "2 of 2 held by runs" in pool_line[0] and "1 step(s) waiting" in pool_line[0], status
        as_json = json.loads(marketcov(["status", "--format", "json"], env).stdout)
        (pool,) = [p for p in as_json["pools"] if p["pool"] == "vendor_binance"]
        assert {h["run_id"][:8] for h in pool["holders"]} == holders and pool["waiting"] == 1, pool

        server.script = []
        first.send_signal(signal.SIGTERM)  # the holders stop: their slots go to the waiting run
        first.wait(timeout=60)
        rest, _ = second.communicate(timeout=240)[1], None
        assert second.returncode == 0, rest[-3000:]
        assert "got its slot in pool vendor_binance" in rest, rest[-3000:]


def test_two_identical_backfills_at_once_fetch_and_write_each_partition_once(home: Path) -> None:
    cfg = {
        "intervals": {"1m": {"window_days": 90}},
        "asset_classes": {
            "crypto": {"calendar": "24/7", "vendors": ["binance"], "intervals": ["1m"], "symbols": SYMBOLS}
        },
        "vendors": {"binance": {**FAST, "read_timeout": 10}},
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    with FakeBinance() as server:
        server.script = [Fault(delay=0.5)] * 200  # slow enough that the two overlap
        env = {**base_env(home, None), "MARKETCOV_BINANCE_BASE_URL": server.url}
        both = [
            subprocess.Popen(
                [sys.executable, "-m", "marketcov_dagster.cli", "backfill", *RANGE_ARGS],
                env=env,
                cwd=home,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in both]
    assert [p.returncode for p in both] == [0, 0], [o[1][-2000:] for o in outs]
    notes = [err for _out, err in outs if "another backfill or run is materializing now" in err]
    assert len(notes) == 1, [err[-1500:] for _o, err in outs]
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    try:
        lineage = wh.lineage()
    finally:
        wh.dispose()
    writes = lineage.groupby(["symbol", "session"]).size()
    assert len(writes) == 2 * 6 and set(writes) == {1}, writes  # every partition written once
    assert not list((home / ".marketcov-claims").glob("*.json")), "a claim outlived its backfill"
