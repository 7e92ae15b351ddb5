"""``marketcov ui``: the Dagster UI and daemon on the CLI's instance, with no deprecation notice;
the daemon's schedules keep the data fresh; stopping it stops both children."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import dagster as dg
import yaml

from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, free_port, marketcov, open_instance, start_ui, wait_until


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_ui_serves_the_cli_instance_and_its_schedules_keep_minutes_fresh(home: Path) -> None:
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["asset_classes"] = {"crypto": {**cfg["asset_classes"]["crypto"], "intervals": ["1m"]}}
    cfg["intervals"]["1m"].update(refresh_every_minutes=1, schedule_delay_minutes=0)
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    env = base_env(home, None)
    first = marketcov(["backfill"], env)
    assert first.returncode == 0, first.stderr[-3000:]
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    newest_before = wh.latest_bar_ts([("BTCUSDT", "1m")])[("BTCUSDT", "1m")]

    port = free_port()
    log = home / "ui.log"
    ui = start_ui(env, home, port, log)
    try:
        children = _children(ui.pid)
        assert len(children) == 2, children

        def scheduled_run_succeeded() -> bool:
            with open_instance(home) as instance:
                runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
                return any("dagster/schedule_name" in r.tags for r in runs)

        wait_until(scheduled_run_succeeded, 240, "a scheduled run to succeed", log)
        with open_instance(home) as instance:
            latest = instance.get_latest_materialization_event(dg.AssetKey(["ohlcv", "1m", "BTCUSDT"]))
            assert latest is not None
            assert "dagster/schedule_name" in instance.get_run_by_id(latest.run_id).tags  # type: ignore[union-attr]
        assert wh.latest_bar_ts([("BTCUSDT", "1m")])[("BTCUSDT", "1m")] >= newest_before
        status = marketcov(["status", "--format", "json"], env)
        assert '"stale": 0' in status.stdout, status.stdout[-2000:]
    finally:
        ui.send_signal(signal.SIGTERM)
        code = ui.wait(timeout=60)
    text = log.read_text()
    assert code == 0 and "ui stopped" in text, text[-3000:]
    assert not [p for p in children if _alive(p)], "webserver or daemon outlived marketcov ui"
    for notice in ("SupersessionWarning", "dg dev", "will not be used"):
        assert notice not in text, text[-3000:]
    wh.dispose()
