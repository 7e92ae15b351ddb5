"""One definition of stale, gapped, not built yet and SLA met (``lib/summary.py``)."""

from __future__ import annotations

from typing import Any

from marketcov_dagster.lib.coverage import AssetCoverage, Segment
from marketcov_dagster.lib.summary import headline, is_gapped, summarize, summary_rows
from marketcov_dagster.lib.universe import SlaSettings
from marketcov_dagster_tests.conftest import small_universe

DAYS = ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]


def _cov(key: str, stored: list[str], partial: tuple[str, ...] = ()) -> AssetCoverage:
    missing = [d for d in DAYS if d not in stored]
    present = [d for d in stored if d not in partial]
    return AssetCoverage(
        asset_key=key,
        symbol="X",
        interval="1d",
        calendar="XNYS",
        expected_sessions=len(DAYS),
        covered_sessions=len(present),
        coverage_pct=100.0 * len(present) / len(DAYS),
        first_session=stored[0] if stored else None,
        last_session=stored[-1] if stored else None,
        rows=len(stored),
        segments=[Segment(stored[0], stored[-1], len(stored), len(stored))] if stored else [],
        missing=missing,
        partial=list(partial),
        first_expected=DAYS[0],
        last_expected=DAYS[-1],
    )


def test_only_a_hole_after_the_first_stored_session_is_a_gap() -> None:
    assert not is_gapped(_cov("a", DAYS[2:]))  # older history not loaded yet
    assert is_gapped(_cov("b", [DAYS[0], DAYS[1], DAYS[3], DAYS[4]]))  # a hole inside
    assert is_gapped(_cov("c", DAYS[:3]))  # the newest sessions missing
    assert is_gapped(_cov("d", DAYS[2:], partial=(DAYS[3],)))  # a partial one
    assert not is_gapped(_cov("e", []))  # nothing stored: not built yet, not gapped


def _freshness(key: str, lag: float | None, stale: bool = False) -> dict[str, Any]:
    return {
        "asset_key": key,
        "latest_end": None if lag is None else "2026-11-27T21:00:00+00:00",
        "lag_minutes": lag,
        "threshold_minutes": 60.0,
        "stale": stale,
        "no_data": lag is None,
        "open_incident": None,
        "last_alert_at": None,
    }


def test_not_built_assets_are_counted_apart_and_outside_the_sla_while_a_behind_one_fails_it() -> None:
    specs = small_universe().specs[:3]
    keys = [s.key_str for s in specs]
    coverage = {keys[0]: _cov(keys[0], DAYS[2:]), keys[1]: _cov(keys[1], DAYS), keys[2]: _cov(keys[2], [])}
    status = {"assets": [_freshness(keys[0], 5.0), _freshness(keys[1], 10.0), _freshness(keys[2], None)]}
    rows = summary_rows(specs, coverage, status, {}, "http://ui")
    assert [r["state"] for r in rows] == ["ok", "ok", "no_data"]
    doc = summarize(rows, coverage, SlaSettings(), "now")
    assert (doc["stale"], doc["gapped"], doc["no_data"], doc["sla_ok"]) == (0, 0, 1, True)
    assert headline(doc) == "0 stale, 0 gapped, 1 not built yet, of 3 assets; SLA met"
    assert "(2/2)" in doc["sla"][0]["actual"]

    status["assets"][1] = _freshness(keys[1], 60.0 * 72, stale=True)  # three days behind
    coverage[keys[0]] = _cov(keys[0], DAYS[:3])
    rows = summary_rows(specs, coverage, status, {}, "http://ui")
    assert [r["state"] for r in rows] == ["gapped", "stale", "no_data"]
    doc = summarize(rows, coverage, SlaSettings(), "now")
    verdicts = {v["name"]: v["ok"] for v in doc["sla"]}
    assert verdicts == {"latest_session_stored": False, "max_lag": False} and doc["sla_ok"] is False
    assert headline(doc) == "1 stale, 1 gapped, 1 not built yet, of 3 assets; SLA NOT met"
