"""Helpers for end-to-end tests: a throwaway DAGSTER_HOME and the `marketcov` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def marketcov(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "marketcov_dagster.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=env["DAGSTER_HOME"],
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    cfg = yaml.safe_load((ROOT / "marketcov.yaml").read_text())
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
