"""One definition of each asset's state, shared by every surface (``marketcov status``, the
status API and page, ``/metrics``):

* **no_data** ("not built yet"): nothing stored. Counted apart, never stale, never gapped, and
  outside the SLA verdicts until its first bars (or indicator rows) are stored.
* **stale**: its newest bar trails the calendar by more than its threshold.
* **gapped**: a missing or partial session at or after its first stored session. History before
  the first stored session that was never loaded is coverage still to fill (coverage %,
  ``backfill --missing``), not a gap.
* **ok**: none of these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.readiness import bucket_counts, freshness_bucket, sla_verdicts
from marketcov_dagster.lib.universe import AssetSpecification, SlaSettings

STATES = ("ok", "stale", "gapped", "no_data")
STATE_TEXT = {"ok": "ok", "stale": "stale", "gapped": "gapped", "no_data": "not built yet"}


def holes(cov: AssetCoverage) -> tuple[list[str], list[str]]:
    """The missing and partial sessions at or after the first stored session."""
    if cov.first_session is None:
        return [], []
    first = cov.first_session
    return [d for d in cov.missing if d >= first], [d for d in cov.partial if d >= first]


def is_gapped(cov: AssetCoverage) -> bool:
    missing, partial = holes(cov)
    return bool(missing or partial)


def asset_state(row: dict[str, Any]) -> str:
    return "stale" if row["stale"] else "no_data" if row["no_data"] else "gapped" if row["gapped"] else "ok"


def summary_rows(
    specs: Sequence[AssetSpecification],
    coverage: dict[str, AssetCoverage],
    status: dict[str, Any],
    vendors: dict[tuple[str, str], str],
    ui_url: str,
) -> list[dict[str, Any]]:
    """One row per asset: its coverage, freshness, state and links."""
    fresh = {a["asset_key"]: a for a in status["assets"]}
    out = []
    for s in specs:
        c, f = coverage[s.key_str], fresh[s.key_str]
        missing, partial = holes(c)
        row = {
            "asset_key": s.key_str,
            "kind": s.kind,
            "symbol": s.symbol,
            "interval": s.interval,
            "asset_class": s.asset_class,
            "calendar": s.calendar,
            "window_first": c.first_expected,
            "window_last": c.last_expected,
            "first_session": c.first_session,
            "last_session": c.last_session,
            "coverage_pct": c.coverage_pct,
            "covered_sessions": c.covered_sessions,
            "expected_sessions": c.expected_sessions,
            "missing_count": len(c.missing),
            "partial_count": len(c.partial),
            "gap_sessions": len(missing) + len(partial),
            "gapped": bool(missing or partial) and not f["no_data"],
            "latest_bar_end": f["latest_end"],
            "lag_minutes": f["lag_minutes"],
            "threshold_minutes": f["threshold_minutes"],
            "stale": f["stale"],
            "no_data": f["no_data"],
            "freshness_bucket": freshness_bucket(f["lag_minutes"]),
            "open_incident": f["open_incident"],
            "last_alert_at": f["last_alert_at"],
            "last_vendor": None if s.indicators else vendors.get((s.symbol, s.interval)),
            "ui_url": f"{ui_url}/assets/{s.key_str}?view=partitions",
        }
        row["state"] = asset_state(row)
        out.append(row)
    return out


def summarize(
    rows: list[dict[str, Any]], coverage: dict[str, AssetCoverage], sla: SlaSettings, checked_at: str
) -> dict[str, Any]:
    """The counts and SLA verdicts of ``rows`` (assets not built yet are counted apart and left
    out of the verdicts)."""
    built = [r for r in rows if not r["no_data"]]
    lags = [None if r["no_data"] else r["lag_minutes"] for r in rows]
    verdicts = sla_verdicts(sla, [coverage[r["asset_key"]] for r in built], [r["lag_minutes"] for r in built])
    return {
        "checked_at": checked_at,
        "assets": rows,
        "stale": sum(1 for r in rows if r["stale"]),
        "gapped": sum(1 for r in rows if r["gapped"]),
        "no_data": len(rows) - len(built),
        "freshness_buckets": bucket_counts(lags),
        "sla": [asdict(v) for v in verdicts],
        "sla_ok": all(v.ok for v in verdicts),
    }


def headline(summary: dict[str, Any]) -> str:
    """``0 stale, 0 gapped, 12 not built yet, of 84 assets; SLA met``: the same words everywhere."""
    sla = "SLA met" if summary["sla_ok"] else "SLA NOT met"
    return (
        f"{summary['stale']} stale, {summary['gapped']} gapped, {summary['no_data']} not built yet, "
        f"of {len(summary['assets'])} assets; {sla}"
    )
