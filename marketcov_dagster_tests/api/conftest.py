"""A real ``marketcov serve`` process on loopback over a backfilled instance, on SQLite and on
PostgreSQL (Dagster's storage and the warehouse both), shared by the tests of one module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef  # open a served instance from its folder

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.conftest import fresh_postgres_database
from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, free_port, marketcov, wait_until


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


@dataclass
class Served:
    base: str
    env: dict[str, str]
    home: Path
    warehouse_url: str
    sessions: list[date]  # the XNYS sessions backfilled for AAPL (the oldest of them skipped for 1m)
    log: Path

    def get(self, path: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
        req = urllib.request.Request(self.base + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def json(self, path: str, status: int = 200) -> Any:
        code, body, headers = self.get(path)
        assert code == status, (path, code, body[:2000])
        assert headers["content-type"].startswith("application/json"), headers
        return json.loads(body, parse_constant=_refuse_constant)


def write_universe(home: Path) -> None:
    cfg = yaml.safe_load((ROOT / "marketcov.yaml").read_text())
    cfg["intervals"] = {"1d": {"window_days": 60}, "1m": {"window_days": 20, "min_completeness": 0.98}}
    cfg["asset_classes"]["us_equity"]["symbols"] = ["AAPL", "BRK.B"]
    cfg["asset_classes"]["crypto"]["symbols"] = ["BTCUSDT"]
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))


def start_server(env: dict[str, str], home: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = home / f"serve-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", "serve", "--port", str(port), *extra],
        env=env,
        cwd=home,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200, 90, "the API", log)
    return proc, base, log


def _backfilled(home: Path, env: dict[str, str]) -> list[date]:
    xnys = get_calendar("XNYS")
    last = xnys.last_closed_session(datetime.now(UTC))
    assert last is not None
    sessions = xnys.sessions(last - timedelta(days=14), last)[-4:]
    first, second, end = sessions[0].isoformat(), sessions[1].isoformat(), last.isoformat()
    crypto_last = get_calendar("24/7").last_closed_session(datetime.now(UTC))
    assert crypto_last is not None  # its own latest day: on a Monday, XNYS's latest is Friday
    for args in (
        # with the indicator asset indicators/1d/AAPL (BRK.B's and BTCUSDT's stay without data)
        ["--symbols", "AAPL", "--intervals", "1d", "--start", first, "--end", end, "--indicators"],
        # 1m from the second session: the first is a hole in AAPL 1m's coverage
        ["--symbols", "AAPL", "--intervals", "1m", "--start", second, "--end", end],
        [
            "--symbols",
            "BTCUSDT",
            "--intervals",
            "1m",
            "--start",
            (crypto_last - timedelta(days=2)).isoformat(),
            "--end",
            crypto_last.isoformat(),
        ],
    ):
        out = marketcov(["backfill", *args], env)
        assert out.returncode == 0, out.stderr[-3000:]
    return sessions


def _seed(url: str) -> None:
    """A remediation entry and a vendor failure the read endpoints must show."""
    wh = Warehouse(url)
    wh.log_remediation(
        [
            {"symbol": "AAPL", "interval": "1m", "run_id": "r1", "vendor": "alpaca", "kind": "vendor_error"}
            | {"detail": "alpaca: HTTP 503"}
        ]
    )
    wh.record_vendor_call("alpaca", "unavailable", "bars AAPL: HTTP 503", 503)
    wh.dispose()


def _failed_run(home: Path, env: dict[str, str]) -> None:
    """A run that fails as a vendor outage would, for the ops endpoint to report with its error."""

    @dg.op
    def fetch_bars() -> None:
        raise RuntimeError("alpaca: HTTP 503 service unavailable")

    @dg.job(name="ohlcv_outage_job")
    def outage() -> None:
        fetch_bars()

    saved = os.environ.get("DAGSTER_PG_URL")
    if "DAGSTER_PG_URL" in env:  # the PostgreSQL profile names its database through this variable
        os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    try:
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            assert not outage.execute_in_process(instance=instance, raise_on_error=False).success
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = saved


@contextmanager
def serving(kind: str, home: Path, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """A backfilled home on ``kind`` (sqlite or postgres) and ``marketcov serve`` on it."""
    home.mkdir(parents=True, exist_ok=True)
    write_universe(home)
    with (
        fresh_postgres_database() if kind == "postgres" else _nothing() as wh_url,
        fresh_postgres_database() if kind == "postgres" else _nothing() as dagster_url,
    ):
        profile = ROOT / "deploy" / "production" / "dagster.yaml" if kind == "postgres" else ROOT / "dagster.yaml"
        shutil.copy(profile, home / "dagster.yaml")
        env = base_env(home, wh_url)
        if dagster_url:
            env["DAGSTER_PG_URL"] = dagster_url
        sessions = _backfilled(home, env)
        url = wh_url or f"sqlite:///{home / 'marketcov_warehouse.sqlite'}"
        _seed(url)
        _failed_run(home, env)
        env.update(extra_env or {})
        proc, base, log = start_server(env, home)
        try:
            yield Served(base, env, home, url, sessions, log)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(request.param, tmp_path_factory.mktemp("api")) as s:
        yield s


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
