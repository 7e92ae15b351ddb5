"""Helpers for end-to-end tests: a throwaway DAGSTER_HOME and the `marketcov` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef  # open a running deployment's instance from its folder

ROOT = Path(__file__).resolve().parents[2]


def marketcov(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketcov_dagster.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd or env["DAGSTER_HOME"],
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "marketcov.yaml").read_text())
    # the fetched bars only, so each backfill here costs what it did: the tests of candles and
    # indicators add them back (test_cli_derived), and the README's main job runs them all
    cfg["intervals"] = {iv: st for iv, st in cfg["intervals"].items() if "from" not in st}
    cfg.pop("indicators", None)
    cfg["asset_classes"]["us_equity"]["symbols"] = ["AAPL", "BRK.B"]
    cfg["asset_classes"]["crypto"]["symbols"] = ["BTCUSDT"]
    (tmp_path / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def base_env(home: Path, warehouse_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MARKETCOV_"))}
    env.update(DAGSTER_HOME=str(home), MARKETCOV_CONFIG=str(home / "marketcov.yaml"))
    if warehouse_url:
        env["MARKETCOV_WAREHOUSE_URL"] = warehouse_url
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One request to a running dagster-webserver's GraphQL API, as the UI sends it."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:  # a server still starting
            pass
        time.sleep(1)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def start_ui(env: dict[str, str], home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``marketcov ui`` (webserver and daemon) in its own session, once its webserver answers."""
    ui = subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", "ui", "--port", str(port)],
        env=env,
        cwd=home,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).status == 200,
            120,
            "the webserver",
            log,
        )
    except BaseException:
        ui.kill()
        ui.wait(timeout=30)
        raise
    return ui


def open_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def ticks(instance: dg.DagsterInstance, name: str) -> list[Any]:
    """The recorded ticks of the schedule or sensor ``name``, newest first."""
    states = [s for s in instance.all_instigator_state() if s.instigator_name == name]
    if not states:
        return []
    return list(instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=100))
