"""The README's main job, end to end: ``marketcov backfill`` then ``marketcov coverage``, as
separate processes against a real DAGSTER_HOME, with the warehouse on SQLite and on Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, free_port, marketcov, wait_until
from marketcov_dagster_tests.e2e.test_browser import _browser_missing, chromium

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_backfill_then_coverage(home: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    env = base_env(home, url)
    xnys = get_calendar("XNYS")
    last = xnys.last_closed_session(datetime.now(UTC))
    assert last is not None
    recent = xnys.sessions(last - timedelta(days=14), last)[-5:]

    out = marketcov(
        [
            "backfill",
            "--symbols",
            "AAPL,BRK.B",
            "--intervals",
            "1d,1m",
            "--start",
            str(recent[0]),
            "--end",
            str(recent[-1]),
        ],
        env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ohlcv_xnys_1d_job: 2 asset(s) x 5 session(s)" in out.stdout
    assert "ohlcv/1m/BRK_2E_B" in out.stdout

    # a second, overlapping backfill changes nothing in the warehouse
    wh = Warehouse(url or f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    before = wh.count_bars()
    assert before == 2 * 5 + 2 * sum(xnys.bounds(d).expected_bars("1m") for d in recent)
    out = marketcov(
        [
            "backfill",
            "--symbols",
            "AAPL",
            "--intervals",
            "1m",
            "--start",
            recent[2].isoformat(),
            "--end",
            recent[-1].isoformat(),
        ],
        env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert wh.count_bars() == before

    cov = marketcov(["coverage", "--format", "json", "--symbols", "AAPL,BRK.B", "--intervals", "1d,1m"], env)
    assert cov.returncode == 0, cov.stderr[-3000:]
    doc = json.loads(cov.stdout)
    by_key = {a["asset_key"]: a for a in doc["assets"]}
    assert set(by_key) == {"ohlcv/1d/AAPL", "ohlcv/1m/AAPL", "ohlcv/1d/BRK_2E_B", "ohlcv/1m/BRK_2E_B"}
    a = by_key["ohlcv/1m/AAPL"]
    assert a["covered_sessions"] == 5 and a["partial"] == []
    assert a["segments"][-1]["end"] == recent[-1].isoformat() and a["segments"][-1]["sessions"] == 5
    assert a["rows"] == sum(xnys.bounds(d).expected_bars("1m") for d in recent)
    assert by_key["ohlcv/1d/BRK_2E_B"]["symbol"] == "BRK.B"
    assert doc["summary"]["assets"] == 4

    # the embedded vendor's calls count in vendor status like any other vendor's
    vendors = json.loads(marketcov(["vendors", "--format", "json"], env).stdout)
    synthetic = next(v for v in vendors if v["vendor"] == "synthetic")
    assert synthetic["state"] == "ok" and synthetic["calls"] >= 4 and synthetic["failures"] == 0

    segments = marketcov(
        ["coverage", "--format", "csv", "--view", "segments", "--symbols", "AAPL", "--intervals", "1d,1m"], env
    )
    lines = segments.stdout.splitlines()
    assert lines[0] == "asset_key,symbol,interval,start,end,sessions,rows" and len(lines) == 1 + 2, lines
    refused = marketcov(["coverage", "--view", "segments"], env)
    assert refused.returncode == 2 and "add --format csv" in refused.stderr

    csv_out = marketcov(["coverage", "--format", "csv", "--intervals", "1d"], env)
    assert csv_out.returncode == 0 and csv_out.stdout.startswith("asset_key,symbol,interval")
    wh.dispose()


def test_bad_input_is_refused_and_changes_nothing(home: Path) -> None:
    env = base_env(home, None)
    cases = [
        (["backfill", "--symbols", "NOPE"], "unknown symbol"),
        (["backfill", "--start", "2024-13-01"], "--start: '2024-13-01' is not a date"),
        (["backfill", "--start", "2024-06-10", "--end", "2024-06-01"], "is after end"),
        (
            ["backfill", "--intervals", "1m", "--start", "2001-01-01", "--end", "2001-02-01"],
            "session between 2001-01-01 and 2001-02-01",
        ),
        (["coverage", "--intervals", "30m"], "unknown interval"),
        (["backfill", "--workers", "0"], "--workers: '0' is not a positive whole number"),
        (["backfill", "--workers", "two"], "--workers: 'two' is not a positive whole number"),
    ]
    for args, message in cases:
        out = marketcov(args, env)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, (args, out.stderr)
    assert not (home / "marketcov_warehouse.sqlite").exists()
    assert not (home / "storage").exists()

    (home / "marketcov.yaml").write_text("intervals: {1d: {window_days: -1}}\nasset_classes: {}\n")
    out = marketcov(["coverage"], env)
    assert out.returncode == 2 and "intervals.1d.window_days" in out.stderr


def test_vendors_and_remediation_commands(home: Path) -> None:
    env = base_env(home, None)
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    wh.record_vendor_call("polygon", "rate_limited", "aggs AAPL minute: HTTP 429", 429)
    wh.record_vendor_call("alpaca", "ok", "bars AAPL 1Min: HTTP 200", 200)
    wh.block_vendor("polygon", 4_102_444_800.0, "HTTP 429 Retry-After 60s")
    base = {"symbol": "AAPL", "interval": "1m", "run_id": "r1"}
    wh.log_remediation(
        [
            {**base, "session": "2024-11-29", "vendor": "alpaca", "kind": "gap", "detail": "200 of 210 expected bars"},
            {
                **base,
                "session": "2024-11-29",
                "vendor": "polygon",
                "kind": "vendor_fallback",
                "detail": "served by polygon",
            },
            {**base, "symbol": "BRK.B", "vendor": "alpaca", "kind": "vendor_error", "detail": "alpaca: HTTP 503"},
        ]
    )

    out = marketcov(["vendors", "--format", "json"], env)
    assert out.returncode == 0, out.stderr
    states = {v["vendor"]: v for v in json.loads(out.stdout)}
    assert states["polygon"]["state"] == "rate_limited" and states["polygon"]["rate_limited"] == 1
    assert states["polygon"]["blocked_until"].startswith("2100-01-01") and states["alpaca"]["blocked_until"] is None
    table = marketcov(["vendors"], env)
    assert "rate_limited" in table.stdout and "alpaca" in table.stdout
    # a plain table, not pandas': no None, no NaN, times in ISO 8601 with their offset to the second
    assert "None" not in table.stdout and "NaN" not in table.stdout and "2100-01-01T00:00:00+00:00" in table.stdout
    assert table.stdout.splitlines()[1].startswith("---"), table.stdout

    out = marketcov(["remediation", "--symbols", "AAPL", "--kind", "gap", "--format", "json"], env)
    rows = json.loads(out.stdout)
    assert [(r["kind"], r["session"], r["vendor"]) for r in rows] == [("gap", "2024-11-29", "alpaca")]
    csv_out = marketcov(["remediation", "--vendor", "alpaca", "--format", "csv"], env)
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0].startswith("id,symbol,interval,session,vendor,kind,detail") and len(lines) == 3
    latest = marketcov(["remediation", "--limit", "1"], env)
    assert "vendor_error" in latest.stdout and "gap" not in latest.stdout
    assert "None" not in latest.stdout and "NaN" not in latest.stdout, latest.stdout
    assert "no remediation entries match" in marketcov(["remediation", "--since", "2100-01-01"], env).stdout

    for args, message in [
        (["remediation", "--kind", "oops"], "unknown kind"),
        (["remediation", "--since", "yesterday"], "--since"),
        (["remediation", "--symbols", "NOPE"], "unknown symbol"),
        (["remediation", "--limit", "0"], "--limit"),
    ]:
        bad = marketcov(args, env)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)


def test_status_shows_lag_incidents_alerts_and_vendors(home: Path) -> None:
    from marketcov_dagster.lib import alerts
    from marketcov_dagster.lib.freshness import freshness
    from marketcov_dagster.lib.mailer import SmtpSettings
    from marketcov_dagster.lib.universe import load_universe

    env = base_env(home, None)
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    three_hours_ago = int((datetime.now(UTC) - timedelta(hours=3)).timestamp() * 1000) // 60_000 * 60_000
    wh.execute(
        "INSERT INTO bars VALUES ('BTCUSDT', '1m', :ts, 1, 1, 1, 1, 1)",
        {"ts": three_hours_ago},
    )
    wh.record_vendor_call("binance", "unavailable", "klines BTCUSDT: HTTP 503", 503)
    spec = next(s for s in load_universe(home / "marketcov.yaml").specs if s.key_str == "ohlcv/1m/BTCUSDT")
    alerts.update_incidents(wh, [freshness(spec, three_hours_ago, datetime.now(UTC))], {}, alerts.AlertStyle())
    assert alerts.flush_outbox(wh, SmtpSettings()).pending == 1  # email off: the alert waits

    out = marketcov(["status", "--format", "json", "--intervals", "1m"], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    by_key = {a["asset_key"]: a for a in doc["assets"]}
    btc = by_key["ohlcv/1m/BTCUSDT"]
    assert (
        btc["stale"] and 160 <= btc["lag_minutes"] <= 170
    )  # 3 h less the 15 min vendor delay and btc["open_incident"] == 1
    aapl = by_key["ohlcv/1m/AAPL"]
    assert aapl["latest_end"] is None and aapl["no_data"] and not aapl["stale"]  # never written: not an incident
    assert [i["asset_key"] for i in doc["open_incidents"]] == ["ohlcv/1m/BTCUSDT"]
    assert doc["email_configured"] is False
    assert doc["pending_alerts"] == 1 and doc["recent_alerts"][0]["subject"].startswith("[marketcov] STALE BTCUSDT 1m")
    assert doc["vendors"][0]["vendor"] == "binance" and doc["vendors"][0]["state"] == "unavailable"
    assert set(by_key) == {"ohlcv/1m/AAPL", "ohlcv/1m/BRK_2E_B", "ohlcv/1m/BTCUSDT"}

    table = marketcov(["status", "--symbols", "BTCUSDT"], env)
    assert table.returncode == 0 and "STALE" in table.stdout and "#1" in table.stdout
    assert "1 alert email(s) pending (email not configured)" in table.stdout
    assert "vendor binance: unavailable" in table.stdout and "None" not in table.stdout
    bad = marketcov(["status", "--symbols", "NOPE"], env)
    assert bad.returncode == 2 and "unknown symbol" in bad.stderr
    wh.dispose()


def test_the_readme_main_job_ends_green(tmp_path: Path) -> None:
    """The quick start as the README writes it, on a machine with no instance yet: no DAGSTER_HOME,
    run from the project root. The instance goes to the default home outside the source tree, the
    output has the README's shape, and status shows no stale asset and no asset without data,
    whatever the hour (also run under a moved clock)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MARKETCOV_"))}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    before = sorted(p.name for p in ROOT.iterdir())
    out = marketcov(["backfill"], env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    home = tmp_path / "data" / "marketcov"
    assert f"created the instance home {home}" in out.stderr
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    assert (home / "storage").is_dir() and (home / "marketcov_warehouse.sqlite").is_file()
    assert _new_in_source_tree(before) == [], "the quick start wrote into the source tree"

    readme = (ROOT / "README.md").read_text()
    shown = readme[readme.index("You should see") :]
    shown = shown[shown.index("```") + 4 : shown.index("```", shown.index("```") + 3)].splitlines()
    run_lines = [line for line in out.stdout.splitlines() if " run " in line]
    # the ledger of the equity months first, then (1d, 1m fetched; 5m, 15m, 1h, 1w resampled) x (XNYS, 24/7)
    assert len(run_lines) == len([line for line in shown if " run " in line]) == 13
    assert run_lines[0].startswith("corporate_actions_job: ")
    assert all(line.endswith(" ok") for line in run_lines), run_lines
    header = next(line for line in out.stdout.splitlines() if line.startswith("asset_key"))
    assert header.split() == next(line for line in shown if line.startswith("asset_key")).split()

    status = marketcov(["status", "--format", "json"], env, cwd=ROOT)
    doc = json.loads(status.stdout)
    assert len(doc["assets"]) == 84  # 12 symbols x 6 intervals of bars, and the 12 daily indicator assets
    not_built = {a["asset_key"] for a in doc["assets"] if a["no_data"]}
    assert not_built == {a["asset_key"] for a in doc["assets"] if a["kind"] == "indicators"}  # not built yet
    assert doc["stale"] == 0 and doc["gapped"] == 0 and doc["sla_ok"] is True, [
        (a["asset_key"], a["state"], a["lag_minutes"]) for a in doc["assets"] if a["state"] not in ("ok", "no_data")
    ]
    assert doc["headline"] == "0 stale, 0 gapped, 12 not built yet, of 84 assets; SLA met"
    table = marketcov(["status"], env, cwd=ROOT).stdout
    assert doc["headline"] in table and "STALE" not in table
    _every_surface_agrees(env, doc)
    assert _new_in_source_tree(before) == []


def _every_surface_agrees(env: dict[str, str], cli: dict[str, Any]) -> None:
    """The status API, the page and /metrics on the same instance say what the CLI says."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return str(r.read().decode())

    try:
        wait_until(lambda: bool(get("/healthz")), 90, "the status API")
        api = json.loads(get("/api/status/summary"))
        assert {a["asset_key"]: a["state"] for a in api["assets"]} == {
            a["asset_key"]: a["state"] for a in cli["assets"]
        }
        for field in ("stale", "gapped", "no_data", "sla_ok", "sla"):
            assert api[field] == cli[field], field
        page = get("/")
        assert cli["headline"] in page and 'class="banner pass"' in page and "SLA met" in page, page[:2000]
        assert "class='m'" not in page, "the heatmap shows a missing session after the quick start"
        assert "not built yet" in page and page.count("badge gapped") == 0
        families = {f.name: f for f in text_string_to_metric_families(get("/metrics"))}
        assert sum(s.value for s in families["marketcov_no_data"].samples) == cli["no_data"] == 12
        assert sum(s.value for s in families["marketcov_gapped"].samples) == 0
        assert sum(s.value for s in families["marketcov_stale"].samples) == 0
        assert {s.labels["name"]: s.value for s in families["marketcov_sla_ok"].samples} == {
            v["name"]: 1.0 for v in cli["sla"]
        }
        _the_browser_sees_a_green_page(base, cli["headline"])
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def _the_browser_sees_a_green_page(base: str, headline: str) -> None:
    """The status page in headless Chromium after the quick start: the banner says the SLA is met
    and no heatmap cell is missing (where no browser is installed, said and left out, except in CI)."""
    reason = _browser_missing()
    if reason:
        print(reason)
        return
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        driver.get(base + "/")
        banner = driver.find_element(By.CSS_SELECTOR, "[role=status]")
        assert banner.text.startswith("SLA met") and "pass" in str(banner.get_attribute("class")), banner.text
        assert headline in driver.find_element(By.TAG_NAME, "header").text
        assert driver.find_elements(By.CSS_SELECTOR, ".heat td.m") == [], "a red heatmap cell after the quick start"
        assert driver.find_elements(By.CSS_SELECTOR, ".heat td.c"), "no complete session in the heatmap"
    finally:
        driver.quit()


def _new_in_source_tree(before: list[str]) -> list[str]:
    """Entries of the project root that were not there before (other tests' screenshots aside)."""
    return sorted({p.name for p in ROOT.iterdir()} - set(before) - {"artifacts"})


def test_an_empty_dagster_home_is_set_up_like_the_default_one(tmp_path: Path) -> None:
    """`DAGSTER_HOME` pointed at a new, empty folder: the same instance config as the default home
    (the consolidated event log, the vendor pool limits), and the user is told once."""
    home = tmp_path / "elsewhere"
    home.mkdir()
    env = base_env(home, None)
    env["MARKETCOV_CONFIG"] = str(ROOT / "marketcov.yaml")
    out = marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"created the instance home {home} with the default dagster.yaml" in out.stderr
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    again = marketcov(["coverage", "--symbols", "AAPL", "--intervals", "1d"], env)
    assert again.returncode == 0 and "created the instance home" not in again.stderr
