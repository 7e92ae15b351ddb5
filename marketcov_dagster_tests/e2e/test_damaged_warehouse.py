"""A damaged embedded warehouse is found and never written into; backups are proven; a restore
replaces nothing until every checksum of the backup is. Real files, damaged as a disk or an
operator damages them (truncated, overwritten in the middle, emptied), and real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from marketcov_dagster_tests.e2e.conftest import base_env, free_port, marketcov, wait_until

WAREHOUSE = "marketcov_warehouse.sqlite"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose warehouse holds a week of AAPL and BTCUSDT daily bars."""
    from marketcov_dagster_tests.e2e.conftest import ROOT

    home = tmp_path_factory.mktemp("filled")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    shutil.copy(ROOT / "marketcov.yaml", home / "marketcov.yaml")
    out = marketcov(["backfill", "--symbols", "AAPL,BTCUSDT", "--intervals", "1d"], base_env(home, None))
    assert out.returncode == 0, out.stderr[-3000:]
    return home


@pytest.fixture
def home(filled: Path, tmp_path: Path) -> Path:
    """A copy of the filled home, free to damage."""
    copy = tmp_path / "home"
    shutil.copytree(filled, copy)
    return copy


def _half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _random_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 4)
        f.write(os.urandom(size // 2))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE: dict[str, Callable[[Path], None]] = {"truncated": _half, "overwritten": _random_middle, "emptied": _empty}
COMMANDS = [
    ["status"],
    ["vendors"],
    ["remediation"],
    ["coverage"],
    ["bars", "AAPL"],
    ["backfill", "--symbols", "AAPL", "--intervals", "1d"],
    ["verify"],
    ["backup", "copy.sqlite"],
]


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_every_command_refuses_a_damaged_warehouse_in_one_line_and_writes_nothing(home: Path, kind: str) -> None:
    path = home / WAREHOUSE
    DAMAGE[kind](path)
    before = path.read_bytes()
    env = base_env(home, None)
    for command in COMMANDS:
        out = marketcov(command, env)
        lines = [x for x in out.stderr.splitlines() if x.startswith("marketcov:")]
        assert out.returncode == 2 and "Traceback" not in out.stderr, (command, out.stderr[-2000:])
        assert len(lines) == 1 and str(path) in lines[0] and "marketcov restore" in lines[0], (command, lines)
    assert path.read_bytes() == before, "a command wrote into the damaged warehouse"
    assert not (home / "copy.sqlite").exists()


def test_serve_listens_on_a_damaged_warehouse_and_healthz_says_why(home: Path) -> None:
    _half(home / WAREHOUSE)
    port = free_port()
    log = home / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", "serve", "--port", str(port)],
        env=base_env(home, None),
        cwd=home,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def answer(path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        wait_until(lambda: answer("/healthz")[0] == 503, 90, "the API", log)
        code, health = answer("/healthz")
        assert health["ok"] is False and str(health["warehouse"]).startswith("damaged: is truncated"), health
        assert health["instance"] == "ok"
        code, body = answer("/api/status/summary")
        assert code == 503 and "the warehouse is damaged" in str(body["detail"]), body
        assert answer("/openapi.json")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "is damaged" in log.read_text()


def _bars(home: Path) -> str:
    out = marketcov(["bars", "AAPL", "--format", "json"], base_env(home, None))
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_backup_restores_a_damaged_warehouse_only_once_proven(home: Path, tmp_path: Path) -> None:
    env = base_env(home, None)
    original = _bars(home)
    backup = tmp_path / "backups" / "wh.sqlite"
    backup.parent.mkdir()
    out = marketcov(["backup", str(backup)], env)
    assert out.returncode == 0, out.stderr[-2000:]
    manifest = json.loads((tmp_path / "backups" / "wh.sqlite.manifest.json").read_text())
    keys = {(p["asset_key"], p["session"]) for p in manifest["partitions"]}
    assert {k for k, _ in keys} == {"ohlcv/1d/AAPL", "ohlcv/1d/BTCUSDT"} and len(keys) >= 6, keys
    assert all(len(p["checksum"]) == 64 for p in manifest["partitions"])
    assert marketcov(["backup", str(backup)], env).returncode == 2, "a backup overwrote another"

    _random_middle(home / WAREHOUSE)
    assert marketcov(["status"], env).returncode == 2

    tampered = tmp_path / "tampered.sqlite"
    shutil.copy(backup, tampered)
    shutil.copy(tmp_path / "backups" / "wh.sqlite.manifest.json", tmp_path / "tampered.sqlite.manifest.json")
    conn = sqlite3.connect(tampered)
    with conn:
        assert conn.execute("UPDATE bars SET close = close * 1.01 WHERE symbol = 'AAPL'").rowcount > 0
    conn.close()
    damaged = (home / WAREHOUSE).read_bytes()
    refused = marketcov(["restore", str(tampered)], env)
    assert refused.returncode == 2 and "do not match its manifest" in refused.stderr, refused.stderr
    assert (home / WAREHOUSE).read_bytes() == damaged, "a refused restore replaced the warehouse"
    (tmp_path / "tampered.sqlite.manifest.json").unlink()
    no_manifest = marketcov(["restore", str(tampered)], env)
    assert no_manifest.returncode == 2 and "manifest.json is missing" in no_manifest.stderr

    restored = marketcov(["restore", str(backup)], env)
    assert restored.returncode == 0 and "every checksum proven" in restored.stderr, restored.stderr
    assert _bars(home) == original
    verified = marketcov(["verify"], env)
    assert verified.returncode == 0 and "0 damaged or lost" in verified.stdout, verified.stdout
    assert list(home.glob(f"{WAREHOUSE}.replaced-*")), "the replaced file was not kept"


def test_verify_names_each_altered_and_lost_partition(home: Path) -> None:
    env = base_env(home, None)
    with sqlite3.connect(home / WAREHOUSE) as conn:
        (first, last) = conn.execute(
            "SELECT MIN(ts), MAX(ts) FROM bars WHERE symbol = 'AAPL' AND interval = '1d'"
        ).fetchone()
        conn.execute("UPDATE bars SET volume = volume + 1 WHERE symbol = 'AAPL' AND ts = ?", (first,))
        conn.execute("DELETE FROM bars WHERE symbol = 'AAPL' AND ts = ?", (last,))
    out = marketcov(["verify", "--format", "json"], env)
    assert out.returncode == 1, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    problems = {f["session"]: f["problem"] for f in doc["findings"]}
    assert len(problems) == 2 and all(f["asset_key"] == "ohlcv/1d/AAPL" for f in doc["findings"]), doc
    assert "its bars are gone" in problems[max(problems)], problems
    assert "hash to" in problems[min(problems)], problems
    text = marketcov(["verify"], env)
    assert text.returncode == 1 and "2 damaged or lost" in text.stdout, text.stdout


def test_coverage_never_claims_a_partition_whose_bars_are_gone(home: Path) -> None:
    env = base_env(home, None)
    before = json.loads(
        marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d", "--format", "json"], env).stdout
    )
    (asset,) = before["assets"]
    assert asset["lost"] == [] and asset["covered_sessions"] >= 3
    gone = asset["last_session"]
    with sqlite3.connect(home / WAREHOUSE) as conn:  # the bars and their write vanish; the history stays
        conn.execute("DELETE FROM partition_lineage WHERE symbol = 'AAPL' AND interval = '1d' AND session = ?", (gone,))
        conn.execute(
            "DELETE FROM bars WHERE symbol = 'AAPL' AND interval = '1d' AND ts = (SELECT MAX(ts) FROM bars "
            "WHERE symbol = 'AAPL' AND interval = '1d')"
        )
    after = json.loads(
        marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d", "--format", "json"], env).stdout
    )
    (asset2,) = after["assets"]
    assert asset2["lost"] == [gone] and gone in asset2["missing"], asset2
    assert asset2["covered_sessions"] == asset["covered_sessions"] - 1
    status = json.loads(marketcov(["status", "--symbols", "AAPL", "--intervals", "1d", "--format", "json"], env).stdout)
    assert {a["asset_key"]: a["gapped"] for a in status["assets"]}["ohlcv/1d/AAPL"] is True
    healed = marketcov(["backfill", "--symbols", "AAPL", "--intervals", "1d", "--missing", "--start", gone], env)
    assert healed.returncode == 0 and f"x 1 session(s) {gone}..{gone}" in healed.stdout, healed.stdout
    final = json.loads(
        marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d", "--format", "json"], env).stdout
    )
    assert final["assets"][0]["lost"] == [] and final["assets"][0]["covered_sessions"] == asset["covered_sessions"]
