"""The prices surfaces end to end, as a user calls them: a backfill loads NVDA's bars and its
ledger, ``marketcov actions`` and ``/api/actions`` show the split, ``bars --adjust`` and
``/api/bars?adjust=`` give the same provable adjusted bars, and a held revision is listed and
accepted from the command line and shown over HTTP."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Verdict, Warehouse
from marketcov_dagster_tests.api.conftest import start_server
from marketcov_dagster_tests.e2e.conftest import ROOT, base_env, marketcov
from marketcov_dagster_tests.fakes.vendor_servers import FakePolygon

XNYS = get_calendar("XNYS")
SPLIT = date(2024, 6, 10)  # NVDA's 10-for-1, in the synthetic history
REVISED = date(2024, 6, 12)
REFETCHED = date(2024, 6, 5)
RANGE = ["--start", "2024-06-03", "--end", "2024-06-14"]


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


class _Revising(SyntheticVendor):
    """The synthetic market, with the vendor's corrected volume on one session."""

    def fetch_bars(self, symbol: str, interval: Interval, start: Any, end: Any) -> pd.DataFrame:  # type: ignore[override]
        df = super().fetch_bars(symbol, interval, start, end)
        on = df["ts"] == XNYS.bounds(REVISED).open_ms
        df.loc[on, "volume"] = df.loc[on, "volume"] + 1000
        return df


@pytest.fixture
def prices_home(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    cfg = {
        "intervals": {"1d": {"window_days": 9000, "on_revision": "hold"}},  # NVDA's split stays in the window
        "asset_classes": {
            "us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1d"], "symbols": ["NVDA"]}
        },
    }
    (tmp_path / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())  # the embedded default
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    env = base_env(tmp_path, url)
    out = marketcov(["backfill", "--symbols", "NVDA", "--start", "2024-05-01", "--end", "2024-07-31"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "corporate_actions_job: " in out.stdout and " ok" in out.stdout, out.stdout
    return tmp_path, env, url


def test_actions_adjusted_bars_and_a_held_revision_from_the_cli_and_over_http(
    prices_home: tuple[Path, dict[str, str], str],
) -> None:
    home, env, url = prices_home
    actions = marketcov(["actions", "NVDA", "--format", "json"], env)
    assert actions.returncode == 0, actions.stderr
    report = _strict(actions.stdout)
    split = [a for a in report["actions"] if a["ex_date"] == SPLIT.isoformat()]
    assert report["symbol"] == "NVDA" and len(split) == 1 and "10-for-1" in split[0]["description"], report
    assert "10-for-1" in marketcov(["actions", "NVDA"], env).stdout  # the table too

    adjusted_out = marketcov(["bars", "NVDA", "--interval", "1d", *RANGE, "--adjust", "split", "--format", "json"], env)
    raw_out = marketcov(["bars", "NVDA", "--interval", "1d", *RANGE, "--format", "json"], env)
    assert adjusted_out.returncode == 0 and raw_out.returncode == 0, adjusted_out.stderr + raw_out.stderr
    adjusted, raw = _strict(adjusted_out.stdout), _strict(raw_out.stdout)
    assert adjusted["adjust"] == "split" and adjusted["as_of"] == "2024-06-14"
    assert [a["ex_date"] for a in adjusted["actions"]] == [SPLIT.isoformat()]
    assert [b["ts"] for b in adjusted["bars"]] == [b["ts"] for b in raw]
    for a, r in zip(adjusted["bars"], raw, strict=True):
        assert a["price_factor"] == (0.1 if a["ts"][:10] < SPLIT.isoformat() else 1.0)
        for c in ("open", "high", "low", "close"):  # raw = adjusted / factor
            assert a[c] / a["price_factor"] == pytest.approx(r[c], rel=1e-9)
        assert a["volume"] / a["volume_factor"] == pytest.approx(r["volume"], rel=1e-9)
    refused = marketcov(["bars", "NVDA", "--interval", "1d", *RANGE, "--as-of", "2024-06-14"], env)
    assert refused.returncode == 2 and "--adjust split or --adjust all" in refused.stderr

    # the vendor corrects one session: under on_revision: hold the stored bars stay, pending
    wh = Warehouse(url)
    kept = wh.read_bars("NVDA", "1d", *XNYS.partition_window_ms(REVISED))
    ingest_sessions(
        symbol="NVDA",
        interval="1d",
        calendar=XNYS,
        sessions=[REVISED],
        vendors=[_Revising(lambda _s: XNYS)],
        warehouse=wh,
        run_id="refetch",
        on_revision="hold",
    )
    assert wh.read_bars("NVDA", "1d", *XNYS.partition_window_ms(REVISED)).equals(kept)
    (pending,) = _strict(marketcov(["revisions", "--format", "json"], env).stdout)
    assert pending["status"] == "pending" and pending["session"] == REVISED.isoformat(), pending
    assert pending["bars_changed"] == 1 and pending["asset_key"] == "ohlcv/1d/NVDA"
    decide = ["revisions", "accept", "--asset", "ohlcv/1d/NVDA", "--partition", REVISED.isoformat()]
    accepted = marketcov(decide, env)
    assert accepted.returncode == 0, accepted.stderr
    now = wh.read_bars("NVDA", "1d", *XNYS.partition_window_ms(REVISED))
    assert now["volume"].tolist() == [kept["volume"].iloc[0] + 1000]  # the vendor's bars are in force
    again = marketcov(decide, env)
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    (decided,) = _strict(marketcov(["revisions", "--format", "json"], env).stdout)
    assert adjusted["unverified"] == []
    # a session whose latest check failed is named beside the bars read (derived data refuses it)
    failing = Verdict("2024-06-04", "jumps_explained", False, "ERROR", "close moved -50.0%")
    wh.record_verdicts("NVDA", "1d", [failing], "check-run")
    read = marketcov(["bars", "NVDA", "--interval", "1d", *RANGE, "--adjust", "split", "--format", "json"], env)
    after = _strict(read.stdout)
    assert after["unverified"] == [
        {"session": "2024-06-04", "check": "jumps_explained", "description": "close moved -50.0%"}
    ]
    assert "ohlcv/1d/NVDA 2024-06-04 failed jumps_explained" in read.stderr
    changed = [b["ts"][:10] for b, a in zip(adjusted["bars"], after["bars"], strict=True) if b != a]
    assert changed == [REVISED.isoformat()]  # the accepted revision, and nothing else
    assert decided["status"] == "accepted" and decided["decided_at"] is not None

    proc, base, _log = start_server(env, home)
    try:
        import urllib.error
        import urllib.request

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=30) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        code, body = get("/api/actions/NVDA")
        assert code == 200 and _strict(body) == report
        assert get("/api/actions/NOPE")[0] == 404
        code, body = get("/api/bars/NVDA/1d?start=2024-06-03&end=2024-06-14&adjust=split")
        assert code == 200 and _strict(body) == after  # the CLI's answer, exactly
        code, body = get("/api/revisions")
        doc = _strict(body)
        assert code == 200 and doc["total"] == 1 and doc["items"][0] == decided
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_backfill_prints_each_partition_the_vendor_revised(tmp_path: Path) -> None:
    cfg = {
        "intervals": {"1d": {"window_days": 9000}},
        "asset_classes": {
            "us_equity": {"calendar": "XNYS", "vendors": ["polygon"], "intervals": ["1d"], "symbols": ["AAPL"]}
        },
        "vendors": {"polygon": {"requests_per_minute": 6000, "burst": 100}},  # loopback: no free-tier pacing
    }
    (tmp_path / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())  # the embedded default
    with FakePolygon() as polygon:
        env = {
            **base_env(tmp_path, f"sqlite:///{tmp_path / 'warehouse.sqlite'}"),
            "MARKETCOV_POLYGON_BASE_URL": polygon.url,
            "POLYGON_API_KEY": FakePolygon.API_KEY,
        }
        backfill = ["backfill", "--symbols", "AAPL", "--start", "2024-06-03", "--end", "2024-06-07"]
        first = marketcov(backfill, env)
        assert first.returncode == 0 and "revised" not in first.stdout, first.stdout + first.stderr[-2000:]
        polygon.revised[XNYS.bounds(REFETCHED).open_ms] = 1.01  # the vendor corrects one session's prices
        second = marketcov(backfill, env)
        assert second.returncode == 0, second.stderr[-2000:]
    lines = [line for line in second.stdout.splitlines() if line.startswith("revised ")]
    assert len(lines) == 1 and lines[0].startswith(f"revised AAPL 1d {REFETCHED.isoformat()} (polygon): 1 changed"), (
        second.stdout
    )
    assert FakePolygon.API_KEY not in second.stdout + second.stderr
    (listed,) = _strict(marketcov(["revisions", "--format", "json"], env).stdout)
    assert listed["status"] == "accepted" and listed["max_rel_change"] == pytest.approx(0.01, rel=1e-6)
