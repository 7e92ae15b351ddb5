"""The status page in a real headless Chromium: filter it, export CSV (a real download), follow an
asset's link into the Dagster UI's partitions view, and run axe: no serious or critical
accessibility violation. Saves ``status_page.png`` with the other screenshots."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketcov_dagster_tests.api.conftest import serving
from marketcov_dagster_tests.e2e.conftest import free_port, wait_until
from marketcov_dagster_tests.e2e.test_browser import SCREENSHOTS, chromium


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def chrome(downloads: Path) -> Iterator[object]:
    driver = chromium(downloads)
    yield driver
    driver.quit()


def test_status_page_filters_exports_links_to_dagster_and_passes_axe(
    chrome: object, downloads: Path, tmp_path: Path
) -> None:
    from axe_selenium_python import Axe
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select

    assert isinstance(chrome, WebDriver)
    ui_port = free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    with serving("sqlite", tmp_path / "home", {"MARKETCOV_UI_URL": ui}) as served:
        log = served.home / "webserver.log"
        web = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-webserver")),
                "-m",
                "marketcov_dagster.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(ui_port),
            ],
            cwd=served.home,
            env=served.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            chrome.get(served.base + "/")
            assert chrome.title == "marketcov status"
            rows = chrome.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
            assert len(rows) == 9  # 6 bars and 3 indicator assets
            banner = chrome.find_element(By.CSS_SELECTOR, "[role=status]").text
            sla_ok = served.json("/api/status/summary")["sla_ok"]
            assert banner.startswith("SLA met" if sla_ok else "SLA NOT met"), banner

            axe = Axe(chrome)
            axe.inject()
            results = axe.run()
            serious = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
            assert serious == [], axe.report(serious)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            chrome.save_screenshot(str(SCREENSHOTS / "status_page.png"))

            # filter with the form (no JavaScript involved): the minute assets with no data yet (a
            # state that does not move with the hour the test runs at, unlike stale)
            Select(chrome.find_element(By.ID, "f-intervals")).select_by_visible_text("1m")
            Select(chrome.find_element(By.ID, "f-state")).select_by_visible_text("no_data")
            chrome.find_element(By.XPATH, "//button[text()='Filter']").click()
            wait_until(lambda: "intervals=1m" in chrome.current_url, 30, "the filtered page")
            shown = [
                r.find_element(By.TAG_NAME, "th").text
                for r in chrome.find_elements(By.CSS_SELECTOR, "#summary tbody tr")
            ]
            assert shown == ["ohlcv/1m/BRK_2E_B"], shown

            # export what is shown: a real download of the same rows
            chrome.find_element(By.ID, "export").click()
            wait_until(lambda: (downloads / "status.csv").exists(), 30, "the CSV download")
            time.sleep(0.5)
            with (downloads / "status.csv").open() as f:
                exported = list(csv.DictReader(f))
            assert [r["asset_key"] for r in exported] == shown and exported[0]["no_data"] == "True"

            # the asset links to its partitions view in the Dagster UI
            wait_until(
                lambda: urllib.request.urlopen(f"{ui}/server_info", timeout=5).status == 200, 120, "webserver", log
            )
            chrome.get(served.base + "/?q=aapl&intervals=1m")
            chrome.find_element(By.LINK_TEXT, "ohlcv/1m/AAPL").click()
            wait_until(lambda: "Materialized (3)" in chrome.find_element(By.TAG_NAME, "body").text, 90, "the UI", log)
            assert chrome.current_url.startswith(f"{ui}/assets/ohlcv/1m/AAPL")
        finally:
            web.terminate()
            web.wait(timeout=30)
