"""A real ``dagster-daemon`` on loopback: the freshness sensor's first tick sends a real email
(aiosmtpd), and a daemon restart does not send it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from marketcov_dagster.lib import alerts
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, open_instance, ticks
from marketcov_dagster_tests.fakes.smtp import SmtpServer

DEADLINE_SECONDS = 120


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(condition: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        assert proc.poll() is None, log.read_text()[-4000:]
        time.sleep(0.5)
    raise AssertionError(f"timed out; daemon log:\n{log.read_text()[-4000:]}")


def test_daemon_sensor_tick_sends_one_real_email(home: Path, smtp_server: SmtpServer) -> None:
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["asset_classes"] = {"crypto": {**cfg["asset_classes"]["crypto"], "intervals": ["1m"]}}
    cfg["alerting"] = {"freshness_interval_seconds": 5}
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    env = base_env(home, None)
    env.update(
        MARKETCOV_SMTP_HOST="127.0.0.1",
        MARKETCOV_SMTP_PORT=str(smtp_server.port),
        MARKETCOV_ALERT_TO="oncall@desk.test",
        MARKETCOV_ALERT_FROM="marketcov@desk.test",
        MARKETCOV_UI_URL="http://127.0.0.1:3999",
    )
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    two_hours_ago = int((datetime.now(UTC) - timedelta(hours=2)).timestamp()) // 60 * 60_000
    wh.execute("INSERT INTO bars VALUES ('BTCUSDT', '1m', :ts, 1, 1, 1, 1, 1)", {"ts": two_hours_ago})
    log = home / "daemon.log"

    daemon = start_daemon(env, log)
    try:
        wait_for(lambda: len(smtp_server.messages) >= 1 and _ticks(home) >= 3, daemon, log)
    finally:
        stop(daemon)
    mail = smtp_server.messages[0]
    assert str(mail["Subject"]).startswith("[marketcov] STALE BTCUSDT 1m:")
    assert mail["X-Envelope-To"] == "oncall@desk.test"
    assert "http://127.0.0.1:3999/assets/ohlcv/1m/BTCUSDT" in smtp_server.body(0)

    # a restarted daemon (a new process, no memory) keeps ticking and sends nothing more
    before = _ticks(home)
    restarted = start_daemon(env, log)
    try:
        wait_for(lambda: _ticks(home) >= before + 2, restarted, log)
    finally:
        stop(restarted)
    subjects = [str(m["Subject"]) for m in smtp_server.messages]
    assert len([s for s in subjects if " STALE " in s]) == 1, subjects  # once per incident, restarts or not
    (incident,) = alerts.list_incidents(wh)
    assert incident["alert_sent_at"] is not None
    # the crypto minute schedule ticks every 15 minutes; one that fell inside this test fetched
    # today's bars, so the incident may have closed with its one recovery mail, and nothing else
    recovered = [s for s in subjects if " RECOVERED " in s]
    assert len(subjects) == 1 + len(recovered) and len(recovered) <= 1, subjects
    assert not recovered or incident["resolved_at"] is not None
    wh.dispose()


def _ticks(home: Path) -> int:
    """Completed ticks of the freshness sensor recorded in the instance."""
    with open_instance(home) as instance:
        return sum(1 for t in ticks(instance, "freshness_alerts") if t.status.value in ("SKIPPED", "SUCCESS"))
