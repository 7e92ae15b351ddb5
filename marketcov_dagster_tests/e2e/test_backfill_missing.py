"""``marketcov backfill --missing`` fills only what coverage shows missing, partial or lost, and
fetches nothing when nothing is: real backfills on a real instance and warehouse."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, marketcov

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)


def _writes(home: Path) -> dict[str, int]:
    """Lineage rows (one per write) per session of AAPL 1d."""
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    try:
        df = wh.lineage("AAPL", "1d")
        return {str(k): int(v) for k, v in df.groupby("session").size().items()} if len(df) else {}
    finally:
        wh.dispose()


def test_missing_fills_only_the_holes_and_nothing_when_complete(home: Path) -> None:
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["indicators"] = {"intervals": ["1d"]}
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    env = base_env(home, None)
    xnys = get_calendar("XNYS")
    last = xnys.last_closed_session(datetime.now(UTC))
    assert last is not None
    days = xnys.sessions(last - timedelta(days=30), last)[-8:]
    select = ["--symbols", "AAPL", "--intervals", "1d"]
    first = marketcov(["backfill", *select, "--start", days[2].isoformat(), "--end", days[4].isoformat()], env)
    assert first.returncode == 0, first.stderr[-2000:]

    fill = marketcov(
        ["backfill", *select, "--missing", "--start", days[0].isoformat(), "--end", days[-1].isoformat()], env
    )
    assert fill.returncode == 0, fill.stderr[-2000:]
    runs = [line for line in fill.stdout.splitlines() if line.startswith("ohlcv_xnys_1d_job:")]
    assert len(runs) == 2, fill.stdout  # the hole before the stored sessions, and the one after
    assert f"x 2 session(s) {days[0]}..{days[1]}" in runs[0] and f"x 3 session(s) {days[5]}..{days[7]}" in runs[1]
    writes = _writes(home)
    assert writes == {d.isoformat(): 1 for d in days}, "a stored session was fetched again"

    again = marketcov(
        ["backfill", *select, "--missing", "--start", days[0].isoformat(), "--end", days[-1].isoformat()], env
    )
    assert again.returncode == 0 and "nothing is missing" in again.stderr, again.stderr[-2000:]
    assert "_job:" not in again.stdout and _writes(home) == writes

    # bars gone from the warehouse while the history says materialized: lost, and fetched again
    lost = days[3]
    with sqlite3.connect(home / "marketcov_warehouse.sqlite") as conn:
        conn.execute("DELETE FROM partition_lineage WHERE symbol = 'AAPL' AND session = ?", (lost.isoformat(),))
        b = xnys.bounds(lost)
        conn.execute(
            "DELETE FROM bars WHERE symbol = 'AAPL' AND interval = '1d' AND ts >= ? AND ts < ?", (b.open_ms, b.close_ms)
        )
    healed = marketcov(
        ["backfill", *select, "--missing", "--start", days[0].isoformat(), "--end", days[-1].isoformat()], env
    )
    assert healed.returncode == 0, healed.stderr[-2000:]
    assert f"x 1 session(s) {lost}..{lost}" in healed.stdout, healed.stdout
    assert _writes(home) == {d.isoformat(): 1 for d in days}

    # indicators: only their own holes, the bars already complete are not fetched again
    with_indicators = [
        *select,
        "--missing",
        "--indicators",
        "--start",
        days[0].isoformat(),
        "--end",
        days[-1].isoformat(),
    ]
    ind = marketcov(["backfill", *with_indicators], env)
    assert ind.returncode == 0, ind.stderr[-2000:]
    assert "indicators_xnys_1d_job:" in ind.stdout and "ohlcv_xnys_1d_job:" not in ind.stdout, ind.stdout
    assert _writes(home) == {d.isoformat(): 1 for d in days}
    done = marketcov(["backfill", *with_indicators], env)
    assert done.returncode == 0 and "nothing is missing" in done.stderr and "_job:" not in done.stdout, done.stdout
