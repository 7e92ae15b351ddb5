"""The Dagster UI in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium): an OHLCV asset's partitions view and the coverage report with its heatmap. Asserts on
what the pages show and saves screenshots to ``$MARKETCOV_SCREENSHOT_DIR`` (default
``artifacts/screenshots`` in the repository)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.report import REPORT_JOB
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import load_universe
from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, free_port, marketcov, open_instance, wait_until

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = ("asset_partitions.png", "coverage_heatmap.png", "coverage_report.png", "derived_lineage.png")
SCREENSHOTS = Path(os.environ.get("MARKETCOV_SCREENSHOT_DIR") or ROOT / "artifacts" / "screenshots")


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if not missing:
        return None
    reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver); browser test skipped"
    if os.environ.get("MARKETCOV_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, but MARKETCOV_REQUIRE_BROWSER is set (as in CI)")
    return reason


def chromium(downloads: Path | None = None) -> Any:
    """A headless Chromium driven by Selenium; skips (or fails, in CI) without a browser."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(arg)
    if downloads is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser() -> Iterator[object]:
    driver = chromium()
    yield driver
    driver.quit()


def test_partitions_view_and_coverage_report_in_chromium(
    home: Path, browser: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    assert isinstance(browser, WebDriver)
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["intervals"] = {
        "1d": {"window_days": 60},
        "1m": {"window_days": 20, "min_completeness": 0.98},
        "5m": {"from": "1m"},  # the candles, to see them in the lineage with their automation
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    env = base_env(home, None)
    xnys = get_calendar("XNYS")
    last = xnys.last_closed_session(datetime.now(UTC))
    assert last is not None
    sessions = xnys.sessions(last - timedelta(days=14), last)[-5:]
    out = marketcov(
        ["backfill", "--symbols", "AAPL", "--start", sessions[0].isoformat(), "--end", last.isoformat()], env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    os.environ.update(DAGSTER_HOME=str(home))  # the report run below writes into this instance
    try:
        with open_instance(home) as instance:
            defs = build_definitions(load_universe(home / "marketcov.yaml"))
            assert defs.resolve_job_def(REPORT_JOB).execute_in_process(instance=instance).success
    finally:
        os.environ.pop("DAGSTER_HOME")

    port = free_port()
    log = home / "webserver.log"
    web = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in SHOTS:  # only this test's pictures: the status page test saves its own beside them
        (SCREENSHOTS / name).unlink(missing_ok=True)
    try:
        wait_until(
            lambda: urllib.request.urlopen(f"{base}/server_info", timeout=5).status == 200, 120, "webserver", log
        )

        def body() -> str:
            return str(browser.find_element(By.TAG_NAME, "body").text)

        def dismiss_community_popup() -> None:
            """The UI greets a new browser with a "Join the Dagster community" dialog a few seconds
            after the first page loads; skipping it once keeps it away for the session."""
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                buttons = browser.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
                if buttons:
                    buttons[0].click()
                    return
                time.sleep(0.5)

        browser.get(f"{base}/assets/ohlcv/1m/AAPL?view=partitions")
        wait_until(lambda: "Materialized (5)" in body(), 90, "the partitions view", log)
        dismiss_community_popup()
        text = body()
        assert "Failed (0)" in text and "AAPL" in text and sessions[-1].isoformat() in text
        # select the latest session: its own materialization metadata shows
        # the partition's row in the list carries its name as a title; the same date may also end the
        # status bar's range (the latest session is today's after the close)
        browser.find_element(By.XPATH, f"//*[@title='{last.isoformat()}']").click()
        expected = xnys.bounds(last).expected_bars("1m")
        wait_until(lambda: "checksum" in body() and "expected_rows" in body(), 30, "the partition's metadata", log)
        assert re.search(rf"\brows\s+{expected}\b", body()), body()
        browser.save_screenshot(str(SCREENSHOTS / "asset_partitions.png"))

        browser.get(f"{base}/assets/coverage_report")
        wait_until(lambda: "ohlcv/1m/AAPL" in body() and "coverage_pct" in body(), 90, "the coverage report", log)
        text = body()
        # the five backfilled sessions form one complete segment; the rest of the window is missing
        assert re.search(r"ohlcv/1m/AAPL [0-9.]+ 5/[0-9]+ 1 [0-9]+ 0 0 " + last.isoformat(), text), text
        assert "no data yet" in text  # MSFT and others were never backfilled: not stale, not mailed
        browser.save_screenshot(str(SCREENSHOTS / "coverage_report.png"))

        show = browser.find_element(By.XPATH, "//*[text()='[Show Markdown]']")
        browser.execute_script("arguments[0].scrollIntoView(); arguments[0].click();", show)
        heatmap = "//img[@alt='coverage heatmap']"
        wait_until(
            lambda: bool(
                browser.execute_script(
                    f'var i = document.evaluate("{heatmap}", document, null, 9, null)'
                    ".singleNodeValue; return i && i.complete && i.naturalWidth > 0;"
                )
            ),
            30,
            "the heatmap image",
            log,
        )
        assert browser.find_element(By.XPATH, heatmap).get_attribute("src").startswith("data:image/png;base64,")
        time.sleep(1)  # let the dialog finish fading in before the picture is taken (nothing is asserted on it)
        browser.save_screenshot(str(SCREENSHOTS / "coverage_heatmap.png"))

        # the candles: their automation condition on the asset's page, their source in its lineage
        browser.get(f"{base}/assets/ohlcv/5m/AAPL")
        wait_until(lambda: "follow_source" in body(), 60, "the candle asset's automation condition", log)
        browser.get(f"{base}/assets/ohlcv/5m/AAPL?view=lineage&lineageScope=upstream")
        wait_until(lambda: body().count("AAPL") >= 2 and "1m" in body(), 60, "the candle asset's lineage", log)
        time.sleep(2)  # the graph lays itself out after its nodes appear
        browser.save_screenshot(str(SCREENSHOTS / "derived_lineage.png"))
    finally:
        web.terminate()
        web.wait(timeout=30)
    assert all((SCREENSHOTS / name).stat().st_size > 0 for name in SHOTS)
    print(f"screenshots: {SCREENSHOTS}")
