"""The shipped reverse-proxy config (deploy/proxy/marketcov-ui.conf) run by a real nginx on
loopback in front of a stand-in UI: no credentials or wrong ones get 401 and reach nothing, good
ones reach the UI without the password travelling on, plain HTTP is redirected to HTTPS."""

from __future__ import annotations

import getpass
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from marketcov_dagster_tests.e2e.conftest import ROOT, free_port

CONFIG = ROOT / "deploy" / "proxy" / "marketcov-ui.conf"


class _Ui(BaseHTTPRequestHandler):
    """Stands in for dagster-webserver: records what reaches it."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        _Ui.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"dagster ui"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[int, int]]:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        if os.environ.get("MARKETCOV_REQUIRE_NGINX"):
            pytest.fail("MARKETCOV_REQUIRE_NGINX is set but nginx is not installed")
        pytest.skip("nginx not installed (Debian: apt-get install nginx); proxy config test skipped")
    ui = ThreadingHTTPServer(("127.0.0.1", 0), _Ui)
    threading.Thread(target=ui.serve_forever, daemon=True).start()
    _Ui.seen = []
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"),
            *("-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")),
        ],
        check=True,
        capture_output=True,
    )
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", "correct horse"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (tmp_path / "htpasswd").write_text(f"alice:{hashed}\n")
    http_port, https_port = free_port(), free_port()
    server = (
        CONFIG.read_text()
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
        .replace("/etc/ssl/certs/marketcov.example.com.pem", str(tmp_path / "cert.pem"))
        .replace("/etc/ssl/private/marketcov.example.com.key", str(tmp_path / "key.pem"))
        .replace("/etc/nginx/marketcov.htpasswd", str(tmp_path / "htpasswd"))
        .replace("127.0.0.1:3000", f"127.0.0.1:{ui.server_address[1]}")
    )
    active = [line for line in server.splitlines() if not line.strip().startswith("#")]
    assert not [line for line in active if "/etc/" in line or ":3000" in line]  # every deploy path replaced
    (tmp_path / "server.conf").write_text(server)
    temp = "\n".join(f"  {k}_temp_path {tmp_path}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"user {getpass.getuser()};\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\n  access_log off;\n{temp}\n  include {tmp_path}/server.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / "nginx.pid").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is not None:
        pytest.fail(f"nginx did not start: {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(0.3)
    try:
        yield http_port, https_port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        ui.shutdown()


def _get(
    url: str, user: str | None = None, password: str = "", headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    if user is not None:
        req.add_header("Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode())
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the test's self-signed certificate

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: object, **_kw: object) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_proxy_refuses_without_a_login_and_forwards_with_one(nginx: tuple[int, int]) -> None:
    http_port, https_port = nginx
    base = f"https://127.0.0.1:{https_port}"

    status, _, headers = _get(f"{base}/runs")
    assert status == 401 and "basic" in headers.get("WWW-Authenticate", "").lower()
    assert _get(f"{base}/runs", "alice", "wrong")[0] == 401
    assert _get(f"{base}/runs", "mallory", "correct horse")[0] == 401
    assert _Ui.seen == []  # nothing unauthenticated reached the UI

    status, body, _ = _get(f"{base}/runs", "alice", "correct horse", {"Upgrade": "websocket", "Connection": "Upgrade"})
    assert status == 200 and body == b"dagster ui"
    (seen,) = _Ui.seen
    assert "authorization" not in seen  # the password stops at the proxy
    assert seen["x-forwarded-proto"] == "https" and seen["upgrade"] == "websocket"
    assert seen["connection"].lower() == "upgrade"

    status, _, headers = _get(f"http://127.0.0.1:{http_port}/runs")
    assert status == 301 and headers["Location"].startswith("https://")
