"""Who gets in: loopback needs no token; any other bind refuses to start without
``MARKETCOV_API_TOKEN``; with a token every request but /healthz must carry it; the token never
shows in the log; no CORS headers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from marketcov_dagster_tests.api.conftest import Served, start_server, write_universe
from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, free_port

TOKEN = "s3cret-token-for-tests-0123456789"


def _home(tmp_path: Path) -> Path:
    write_universe(tmp_path)
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def _serve(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketcov_dagster.cli", "serve", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_public_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    home = _home(tmp_path)
    env = base_env(home, None)
    out = _serve(env, home, "--host", "0.0.0.0", "--port", str(free_port()))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "MARKETCOV_API_TOKEN" in out.stderr, out.stderr
    assert not (home / "marketcov_warehouse.sqlite").exists()  # refused before touching anything
    short = _serve({**env, "MARKETCOV_API_TOKEN": "abc"}, home, "--host", "0.0.0.0", "--port", str(free_port()))
    assert short.returncode == 2 and "shorter than 16" in short.stderr and "abc" not in short.stderr
    blank = _serve({**env, "MARKETCOV_API_TOKEN": " " * 16}, home, "--host", "0.0.0.0", "--port", str(free_port()))
    assert blank.returncode == 2 and "contains spaces" in blank.stderr, blank.stderr


def test_with_a_token_every_request_needs_it(tmp_path: Path) -> None:
    home = _home(tmp_path)
    env = {**base_env(home, None), "MARKETCOV_API_TOKEN": TOKEN}
    proc, base, log = start_server(env, home, "--host", "0.0.0.0")
    served = Served(base, env, home, "", [], log)
    try:
        for path in ("/api/status/summary", "/", "/metrics", "/api/coverage", "/openapi.json"):
            code, body, headers = served.get(path)
            assert code == 401 and headers.get("www-authenticate") == "Bearer", (path, code)
            assert TOKEN not in body
            assert served.get(path, token="wrong-token-of-the-same-length-xx")[0] == 401
            assert served.get(path, token=TOKEN)[0] == 200, path
        assert served.get("/healthz")[0] == 200  # probes need no token and learn nothing
        code, _, headers = served.get("/api/vendors", token=TOKEN)
        assert code == 200 and not any(h.lower().startswith("access-control-") for h in headers)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "bearer token required" in text and TOKEN not in text


def test_loopback_needs_no_token(tmp_path: Path) -> None:
    home = _home(tmp_path)
    env = base_env(home, None)
    proc, base, log = start_server(env, home)
    try:
        served = Served(base, env, home, "", [], log)
        assert served.json("/api/status/summary")["no_data"] == 9  # 6 bars and 3 indicator assets
        req = urllib.request.Request(f"{base}/api/vendors", headers={"Origin": "https://evil.example"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
