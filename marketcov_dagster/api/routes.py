"""The JSON (and CSV) endpoints under ``/api``. Thin: each reads the shared snapshot or calls the
plain-Python function the CLI uses, then shapes the answer."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from marketcov_dagster.api import models as m
from marketcov_dagster.api.context import ApiContext
from marketcov_dagster.api.ops import run_report
from marketcov_dagster.api.params import (
    AssetFilter,
    Paging,
    asset_filter,
    asset_spec,
    csv_list,
    csv_response,
    day,
    paging,
    unprocessable,
)
from marketcov_dagster.defs.history import rows_for
from marketcov_dagster.lib import alerts
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.kinds import REMEDIATION_KINDS
from marketcov_dagster.lib.readiness import range_readiness
from marketcov_dagster.lib.reads import LINEAGE_FIELDS, lineage_page
from marketcov_dagster.lib.summary import is_gapped, summarize
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.windows import BadRangeError

router = APIRouter(prefix="/api")
Format = Literal["json", "csv"]
State = Literal["ok", "stale", "gapped", "no_data"]
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV with format=csv"}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown asset"}}


def ctx_of(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _matches(q: str | None, key: str) -> bool:
    return not q or q.lower() in key.lower()


def summary(ctx: ApiContext, f: AssetFilter, state: str | None = None, q: str | None = None) -> dict[str, Any]:
    snap = ctx.snapshots.get()
    keys = {s.key_str for s in f.apply(snap.specs) if _matches(q, s.key_str)}
    rows = [r for r in snap.rows if r["asset_key"] in keys and (state is None or r["state"] == state)]
    return summarize(rows, snap.coverage, ctx.universe.config.sla, snap.status["checked_at"])


@router.get(
    "/status/summary",
    response_model=m.Summary,
    responses=CSV,
    summary="Per-asset coverage, freshness and SLA verdicts",
)
def status_summary(
    request: Request,
    f: AssetFilter = Depends(asset_filter),
    state: State | None = Query(None, description="only assets in this state"),
    q: str | None = Query(None, max_length=64, description="asset keys containing this text (case-insensitive)"),
    format: Format = "json",
) -> Any:
    ctx = ctx_of(request)
    if format == "csv":
        return csv_response(summary(ctx, f, state, q)["assets"], list(m.AssetStatus.model_fields), "status.csv")
    key = ("summary", _key(f), state, q)
    return json_response(ctx.body(key, lambda _snap: strict_json(summary(ctx, f, state, q))))


def _key(f: AssetFilter) -> tuple[object, ...]:
    return tuple(tuple(v) if v is not None else None for v in (f.symbols, f.intervals, f.asset_classes))


def strict_json(doc: Any) -> bytes:
    """JSON as the response models describe it; NaN and Infinity are refused, never written."""
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _coverage_status(c: AssetCoverage) -> str:
    """``complete`` (the whole window), ``empty`` (not built yet), ``gapped`` (a hole after its
    first stored session), else ``history`` (whole from its first stored session, older history
    not loaded yet): the same gapped as the summary's."""
    if c.covered_sessions == c.expected_sessions:
        return "complete"
    if c.covered_sessions == 0 and not c.partial:
        return "empty"
    return "gapped" if is_gapped(c) else "history"


def _coverage_item(c: AssetCoverage, spec: AssetSpecification) -> dict[str, Any]:
    return {
        **asdict(c),
        "kind": spec.kind,
        "asset_class": spec.asset_class,
        "status": _coverage_status(c),
        "segment_count": len(c.segments),
        "missing_count": len(c.missing),
        "partial_count": len(c.partial),
    }


@router.get(
    "/coverage",
    response_model=m.CoverageList,
    responses=CSV,
    summary="Coverage per asset, searchable and paginated",
)
def coverage(
    request: Request,
    f: AssetFilter = Depends(asset_filter),
    p: Paging = Depends(paging),
    q: str | None = Query(None, max_length=64, description="asset keys containing this text (case-insensitive)"),
    status: Literal["complete", "gapped", "history", "empty"] | None = Query(None),
    format: Format = "json",
) -> Any:
    ctx = ctx_of(request)
    if format == "json":
        key = ("coverage", _key(f), p.page, p.page_size, q, status)
        return json_response(ctx.body(key, lambda _snap: strict_json(_coverage_list(ctx, f, p, q, status))))
    items = _coverage_items(ctx, f, q, status)
    fields = [k for k in m.AssetCoverage.model_fields if k not in ("segments", "missing", "partial")]
    return csv_response(items, fields, "coverage.csv")


def _coverage_items(ctx: ApiContext, f: AssetFilter, q: str | None, status: str | None) -> list[dict[str, Any]]:
    snap = ctx.snapshots.get()
    items = [_coverage_item(snap.coverage[s.key_str], s) for s in f.apply(snap.specs) if _matches(q, s.key_str)]
    return [i for i in items if status is None or i["status"] == status]


def _coverage_list(ctx: ApiContext, f: AssetFilter, p: Paging, q: str | None, status: str | None) -> dict[str, Any]:
    snap = ctx.snapshots.get()
    items = _coverage_items(ctx, f, q, status)
    classes: dict[str, list[dict[str, Any]]] = {}
    for i in items:
        classes.setdefault(i["asset_class"], []).append(i)
    by_class = []
    for name, group in classes.items():
        expected = sum(i["expected_sessions"] for i in group)
        covered = sum(i["covered_sessions"] for i in group)
        by_class.append(
            {
                "asset_class": name,
                "assets": len(group),
                "complete": sum(1 for i in group if i["status"] == "complete"),
                "coverage_pct": round(100.0 * covered / expected, 2) if expected else 100.0,
            }
        )
    return {
        "generated_at": snap.taken_at.isoformat(),
        "total": len(items),
        "page": p.page,
        "page_size": p.page_size,
        "by_asset_class": by_class,
        "items": p.cut(items),
    }


@router.get(
    "/coverage/{symbol}/{interval}",
    response_model=m.Readiness,
    summary="Is this range ready? complete, missing, partial and pending sessions",
    responses=NOT_FOUND,
)
def readiness(
    request: Request,
    symbol: str,
    interval: str,
    start: str | None = Query(None, description="first session, YYYY-MM-DD (default: the window's first)"),
    end: str | None = Query(None, description="last session, YYYY-MM-DD (default: the last closed session)"),
    kind: m.Kind = Query("ohlcv", description="the bars (ohlcv) or their indicator asset (indicators)"),
) -> Any:
    ctx = ctx_of(request)
    spec = asset_spec(ctx.universe, symbol, interval, kind)
    first, last = day(start, "start"), day(end, "end")
    cov = ctx.snapshots.get().coverage[spec.key_str]
    now = datetime.now(UTC)
    lo = first or (datetime.fromisoformat(cov.first_expected).date() if cov.first_expected else now.date())
    hi = last or (datetime.fromisoformat(cov.last_expected).date() if cov.last_expected else now.date())

    def build(_snap: object) -> bytes:
        with ctx.instance_lock:
            rows = rows_for(ctx.instance, spec)
        return strict_json(asdict(range_readiness(spec, get_calendar(spec.calendar), rows, lo, hi, now)))

    try:  # the same question within one snapshot is answered once
        return json_response(ctx.body(("readiness", spec.key_str, lo, hi), build))
    except BadRangeError as e:
        raise unprocessable("start" if first else "end", str(e)) from None


@router.get(
    "/lineage",
    response_model=m.Page[m.LineageEntry],
    summary="Every write of an asset's sessions: vendor, rows, checksums, run",
    responses=CSV | NOT_FOUND,
)
def lineage(
    request: Request,
    symbol: str = Query(..., min_length=1),
    interval: str = Query(..., min_length=1),
    start: str | None = Query(None, description="first session, YYYY-MM-DD"),
    end: str | None = Query(None, description="last session, YYYY-MM-DD"),
    p: Paging = Depends(paging),
    format: Format = "json",
) -> Any:
    ctx = ctx_of(request)
    asset_spec(ctx.universe, symbol, interval)
    lo, hi = day(start, "start"), day(end, "end")
    if lo and hi and lo > hi:
        raise unprocessable("start", f"start {lo} is after end {hi}")
    if format == "csv":
        rows, _ = lineage_page(ctx.warehouse, symbol, interval, lo, hi, 0, 10_000_000)
        return csv_response(rows, LINEAGE_FIELDS, f"lineage_{symbol}_{interval}.csv")
    rows, total = lineage_page(ctx.warehouse, symbol, interval, lo, hi, p.offset, p.page_size)
    return {"total": total, "page": p.page, "page_size": p.page_size, "items": rows}


@router.get(
    "/runs/{run_id}",
    response_model=m.RunReport,
    summary="A run's checksum report: per partition rows, checksum and check results",
    responses={404: {"description": "unknown run"}},
)
def run(request: Request, run_id: str) -> Any:
    ctx = ctx_of(request)
    with ctx.instance_lock:
        report = run_report(ctx.instance, ctx.warehouse, run_id, ctx.ui_url)
    if report is None:
        raise HTTPException(404, detail=f"no run {run_id!r} on this instance")
    return report


@router.get(
    "/remediation",
    response_model=m.Page[m.RemediationEntry],
    responses=CSV,
    summary="The remediation log, newest first",
)
def remediation(
    request: Request,
    f: AssetFilter = Depends(asset_filter),
    p: Paging = Depends(paging),
    kind: str | None = Query(None, description=f"comma-separated: {', '.join(REMEDIATION_KINDS)}"),
    vendor: str | None = Query(None, description="comma-separated vendors"),
    session: str | None = Query(None, description="one session, YYYY-MM-DD"),
    since: str | None = Query(None, description="entries logged on or after this day (UTC), YYYY-MM-DD"),
    format: Format = "json",
) -> Any:
    ctx = ctx_of(request)
    kinds = csv_list(kind, "kind")
    unknown = sorted(set(kinds or ()) - set(REMEDIATION_KINDS))
    if unknown:
        raise unprocessable("kind", f"unknown kind(s) {unknown}; known: {list(REMEDIATION_KINDS)}")
    one, after = day(session, "session"), day(since, "since")
    df = ctx.warehouse.remediation(
        symbols=f.symbols,
        intervals=f.intervals,
        kinds=kinds,
        vendors=csv_list(vendor, "vendor"),
        session=one.isoformat() if one else None,
        since=datetime(after.year, after.month, after.day, tzinfo=UTC) if after else None,
    )
    rows = [{k: _iso(v) for k, v in r.items()} for r in reversed(df.to_dict("records"))]
    for r in rows:
        r.update({k: None for k, v in r.items() if v != v})  # pandas NaN for SQL NULL
    if format == "csv":
        return csv_response(rows, list(m.RemediationEntry.model_fields), "remediation.csv")
    return {"total": len(rows), "page": p.page, "page_size": p.page_size, "items": p.cut(rows)}


@router.get("/vendors", response_model=list[m.VendorState], summary="Each vendor's health and any block in force")
def vendors(request: Request) -> Any:
    wh = ctx_of(request).warehouse
    out = []
    for row in wh.vendor_statuses():
        until, _reason = wh.vendor_block(row["vendor"])
        blocked = datetime.fromtimestamp(until, UTC).isoformat() if until > time.time() else None
        out.append({**{k: _iso(v) for k, v in row.items()}, "blocked_until": blocked})
    return out


@router.get(
    "/revisions",
    response_model=m.Page[m.RevisionEntry],
    summary="Stored partitions a re-fetch changed (bars changed, removed or inserted), newest first",
)
def revisions(
    request: Request,
    f: AssetFilter = Depends(asset_filter),
    p: Paging = Depends(paging),
    since: str | None = Query(None, description="revisions recorded on or after this day, YYYY-MM-DD (UTC)"),
) -> Any:
    first = day(since, "since")
    found = ctx_of(request).warehouse.revisions(
        since=datetime(first.year, first.month, first.day, tzinfo=UTC) if first else None,
        symbols=f.symbols,
        intervals=f.intervals,
    )
    items = [r.as_dict() for r in found]
    return {"total": len(items), "page": p.page, "page_size": p.page_size, "items": p.cut(items)}


@router.get("/incidents", response_model=m.Page[m.Incident], summary="Freshness incidents, newest first")
def incidents(
    request: Request,
    p: Paging = Depends(paging),
    state: Literal["open", "resolved", "all"] = "all",
) -> Any:
    rows = alerts.list_incidents(ctx_of(request).warehouse, open_only=state == "open")
    if state == "resolved":
        rows = [r for r in rows if r["resolved_at"] is not None]
    fields = m.Incident.model_fields
    items = [{k: _iso(r[k]) for k in fields} for r in rows]
    return {"total": len(items), "page": p.page, "page_size": p.page_size, "items": p.cut(items)}


@router.get("/ops", response_model=m.Ops, summary="Run health from Dagster's run history")
def ops(request: Request, hours: int = Query(24, ge=1, le=24 * 90, description="look-back window")) -> Any:
    return ctx_of(request).ops(hours)
