"""``scripts/services`` starts the webserver, the daemon and the status API on one instance, and
stops all three."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, free_port, wait_until


def _services(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "services"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_services_start_the_ui_daemon_and_status_api_and_stop_them(home: Path) -> None:
    env = base_env(home, None)
    ui, api = free_port(), free_port()
    out = _services(env, "start", "--port", str(ui), "--api-port", str(api))
    try:
        assert out.returncode == 0, out.stderr
        assert f"status API: http://127.0.0.1:{api}" in out.stdout
        wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{api}/healthz", timeout=5).status == 200,
            120,
            "the status API",
            home / "services" / "api.log",
        )
        wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{ui}/server_info", timeout=5).status == 200,
            120,
            "the webserver",
            home / "services" / "webserver.log",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/status/summary", timeout=30) as r:
            summary = json.loads(r.read())
        # the API links to the UI these services started
        assert summary["assets"][0]["ui_url"].startswith(f"http://127.0.0.1:{ui}/assets/")
        status = _services(env, "status").stdout
        assert all(f"{name} running" in status for name in ("webserver", "daemon", "api")), status
    finally:
        stopped = _services(env, "stop")
    assert stopped.returncode == 0 and "api stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert all(f"{name} stopped" in _services(env, "status").stdout for name in ("webserver", "daemon", "api"))
