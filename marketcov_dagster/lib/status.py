"""``marketcov status``: freshness, incidents, alerts and vendor health in one read of the warehouse."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from marketcov_dagster.lib import alerts
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.freshness import Freshness, by_table, ended_cutoffs, freshness_now
from marketcov_dagster.lib.mailer import ALERT_TO_ENV, SMTP_HOST_ENV
from marketcov_dagster.lib.texttable import render
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster.lib.windows import window_start


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def outside_session_bars(warehouse: Warehouse, specs: Sequence[AssetSpecification], now: datetime) -> dict[str, int]:
    """Stored bars of each asset that open between two sessions of its window (a Saturday bar in
    XNYS): no partition owns them. One indexed count per exchange asset (24/7 has no gaps)."""
    gaps: dict[tuple[str, int], list[tuple[int, int]]] = {}  # one calendar walk per (calendar, window)
    out: dict[str, int] = {}  # by asset key
    for s in specs:
        if (s.calendar, s.window_days) not in gaps:
            cal = get_calendar(s.calendar)
            gaps[(s.calendar, s.window_days)] = cal.closed_gaps_ms(window_start(cal, s.window_days, now), now.date())
        n = warehouse.count_bars_in(s.symbol, s.interval, gaps[(s.calendar, s.window_days)], s.indicators)
        if n:
            out[s.key_str] = n
    return out


def _measure(warehouse: Warehouse, specs: Sequence[AssetSpecification], now: datetime) -> list[tuple[Freshness, int]]:
    """Freshness and unended rows of each asset (in ``specs``' order), bars and indicator assets
    each from their own table."""
    unended: dict[str, int] = {}
    for indicators, group in by_table(specs):
        pairs = [(s.symbol, s.interval) for s in group]
        counts = warehouse.count_bars_after(pairs, ended_cutoffs(group, now), indicators)
        unended.update((s.key_str, counts.get((s.symbol, s.interval), 0)) for s in group)
    return [(f, unended[f.asset_key]) for f in freshness_now(warehouse, specs, now)]


def status_report(warehouse: Warehouse, specs: Sequence[AssetSpecification], now: datetime) -> dict[str, Any]:
    measured = _measure(warehouse, specs, now)
    strays = outside_session_bars(warehouse, specs, now)
    failing = warehouse.failing_partitions()
    incidents = alerts.list_incidents(warehouse)  # newest first
    latest_incident: dict[str, dict[str, Any]] = {}
    for inc in reversed(incidents):  # oldest first: the newest wins
        latest_incident[inc["asset_key"]] = inc
    assets = []
    for f, unended in measured:
        inc = latest_incident.get(f.asset_key)
        sent = [t for t in ((inc or {}).get("alert_sent_at"), (inc or {}).get("recovery_sent_at")) if t]
        assets.append(
            {
                **f.as_dict(),
                "unended_bars": unended,
                "outside_session_bars": strays.get(f.asset_key, 0),
                "failed_checks": failing.get((f.symbol, f.interval), {}) if f.asset_key.startswith("ohlcv/") else {},
                "open_incident": inc["id"] if inc and inc["resolved_at"] is None else None,
                "last_alert_at": _iso(max(sent)) if sent else None,
            }
        )
    open_incidents = [
        {
            "id": i["id"],
            "asset_key": i["asset_key"],
            "opened_at": _iso(i["opened_at"]),
            "lag_minutes": i["last_lag_minutes"],
            "max_lag_minutes": i["max_lag_minutes"],
            "emailed_at": _iso(i["alert_sent_at"]),
        }
        for i in incidents
        if i["resolved_at"] is None
    ]
    recent = [
        {
            "subject": m["subject"],
            "kind": m["kind"],
            "queued_at": _iso(m["created_at"]),
            "sent_at": _iso(m["sent_at"]),
            "attempts": m["attempts"],
            "last_error": m["last_error"],
        }
        for m in alerts.list_outbox(warehouse, limit=5)
    ]
    vendors = [
        {k: _iso(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in warehouse.vendor_statuses()
    ]
    return {
        "checked_at": now.isoformat(),
        "stale": sum(1 for a in assets if a["stale"]),
        "no_data": sum(1 for a in assets if a["no_data"]),
        "assets": assets,
        "open_incidents": open_incidents,
        "pending_alerts": alerts.pending_count(warehouse),
        "email_configured": bool(os.environ.get(SMTP_HOST_ENV) and os.environ.get(ALERT_TO_ENV)),
        "recent_alerts": recent,
        "vendors": vendors,
    }


def _state_text(a: dict[str, Any]) -> str:
    """The summary's state (``lib/summary.py``) where known, in the words every surface uses."""
    state = a.get("state") or ("stale" if a["stale"] else "no_data" if a["no_data"] else "ok")
    return {"stale": "STALE", "no_data": "not built yet"}.get(state, state)


def to_text(report: dict[str, Any]) -> str:
    cols = ("asset_key", "lag", "threshold", "state", "latest_end", "incident", "last_alert_at")
    rows = []
    for a in report["assets"]:
        lag = "-" if a["no_data"] else f"{a['lag_minutes']:.0f}m"
        rows.append(
            [
                a["asset_key"],
                lag,
                f"{a['threshold_minutes']:.0f}m",
                _state_text(a),
                a["latest_end"] or "-",
                f"#{a['open_incident']}" if a["open_incident"] else "-",
                a["last_alert_at"] or "-",
            ]
        )
    lines = [render(cols, rows), ""]
    for a in report["assets"]:
        for name, sessions in sorted(a.get("failed_checks", {}).items()):
            shown = ", ".join(sessions[:5]) + (f" and {len(sessions) - 5} more" if len(sessions) > 5 else "")
            lines.append(f"{a['asset_key']}: {len(sessions)} partition(s) fail {name}: {shown}")
    if any(a.get("failed_checks") for a in report["assets"]):
        lines.append("(marketcov backfill --missing re-fetches them; marketcov verify checks every partition again)")
        lines.append("")
    counts = report.get("headline") or (
        f"{report['stale']} stale of {len(report['assets'])}"
        + (f" ({report['no_data']} not built yet)" if report["no_data"] else "")
    )
    lines.append(
        counts + f"; {len(report['open_incidents'])} open incident(s); "
        f"{report['pending_alerts']} alert email(s) pending"
        + ("" if report.get("email_configured", True) else " (email not configured)")
    )
    for a in report["assets"]:
        if a["unended_bars"]:
            lines.append(
                f"  {a['asset_key']}: {a['unended_bars']} stored bar(s) dated after now "
                "(not counted as fresh; the verify job logs them as outside_sessions)"
            )
        if a.get("outside_session_bars"):
            lines.append(
                f"  {a['asset_key']}: {a['outside_session_bars']} stored bar(s) between sessions (a night, weekend "
                "or holiday; bars_are_valid fails, the verify job logs them as outside_sessions)"
            )
    for m in report["recent_alerts"]:
        why = m["last_error"] or (
            "email not configured" if not report.get("email_configured", True) else "not attempted yet"
        )
        state = f"sent {m['sent_at']}" if m["sent_at"] else f"PENDING ({m['attempts']} attempt(s): {why})"
        lines.append(f"  alert: {m['subject']} [{state}]")
    for v in report["vendors"]:
        lines.append(f"  vendor {v['vendor']}: {v['state']} since {v['since']} ({v['detail']})")
    if not report["vendors"]:
        lines.append("  vendors: none called yet")
    return "\n".join(lines)
