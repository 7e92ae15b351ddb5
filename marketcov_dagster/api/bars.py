"""``GET /api/bars/{symbol}/{interval}``: stored bars of one asset for a session range, streamed as
strict JSON or CSV, with its indicators on request; the same reader and writers as
``marketcov bars``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from marketcov_dagster.api import models as m
from marketcov_dagster.api.params import asset_spec, day, unprocessable
from marketcov_dagster.api.routes import ctx_of
from marketcov_dagster.lib.barsio import (
    csv_text,
    export_sessions,
    iter_bars,
    json_text,
    session_span_ms,
    with_indicators,
)
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.prices.adjust import adjusted_json_text
from marketcov_dagster.lib.prices.ledger import adjusted_stream, adjustments
from marketcov_dagster.lib.prices.report import actions_report
from marketcov_dagster.lib.windows import BadRangeError

router = APIRouter(prefix="/api")
MISSING_HEADER = "X-Bars-Without-Indicators"


@router.get(
    "/bars/{symbol}/{interval}",
    response_model=list[m.Bar] | m.AdjustedBars,
    summary="Stored bars of one asset for a session range (and their indicators), raw or adjusted, streamed",
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": f"JSON, or CSV with format=csv; with indicators=true the {MISSING_HEADER} header counts "
            "the bars whose indicators were never computed (null there means that, not warming up)",
        },
        404: {"description": "unknown asset"},
    },
)
def bars(
    request: Request,
    symbol: str,
    interval: str,
    start: str | None = Query(None, description="first session, YYYY-MM-DD (default: the window's first)"),
    end: str | None = Query(None, description="last session, YYYY-MM-DD (default: the last that has opened)"),
    format: Literal["json", "csv"] = "json",
    indicators: bool = Query(False, description="add one column per indicator (the interval must have them)"),
    adjust: Literal["none", "split", "all"] = Query(
        "none",
        description="none: raw, as traded; split or all (splits and cash dividends): back-adjusted through the "
        "corporate-actions ledger, as an object naming the basis and the actions, each bar with its factors",
    ),
    as_of: str | None = Query(
        None, description="adjusted bars: the session whose price basis they are in (default: end)"
    ),
) -> Any:
    ctx = ctx_of(request)
    spec = asset_spec(ctx.universe, symbol, interval)
    first, last, basis = day(start, "start"), day(end, "end"), day(as_of, "as_of")
    if basis is not None and adjust == "none":
        raise unprocessable("as_of", "as_of names the basis of adjusted bars: give adjust=split or adjust=all")
    if indicators and interval not in ctx.universe.config.indicators.intervals:
        raise unprocessable("indicators", f"the universe computes no indicators for {interval}")
    cal = get_calendar(spec.calendar)
    try:
        sessions = export_sessions(cal, spec.window_days, first, last, datetime.now(UTC))
    except BadRangeError as e:
        raise unprocessable("start" if first else "end", str(e)) from None
    span = session_span_ms(cal, sessions)
    chunks = iter_bars(ctx.warehouse, symbol, interval, *span)
    header: dict[str, object] | None = None
    if adjust != "none":
        header, chunks = adjusted_stream(ctx.warehouse, cal, symbol, interval, chunks, adjust, sessions, basis)
    headers = {}
    if indicators:
        chunks = with_indicators(ctx.warehouse, symbol, interval, chunks)
        headers[MISSING_HEADER] = str(ctx.warehouse.bars_without_indicators(symbol, interval, *span))
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="bars_{symbol}_{interval}.csv"'
        return StreamingResponse(csv_text(chunks), media_type="text/csv; charset=utf-8", headers=headers)
    if header is not None:
        body = adjusted_json_text(header, chunks, json_text)
        return StreamingResponse(body, media_type="application/json", headers=headers)
    return StreamingResponse(json_text(chunks), media_type="application/json", headers=headers)


@router.get(
    "/actions/{symbol}",
    response_model=m.ActionsReport,
    summary="A symbol's corporate actions and the split and dividend factors in force over each session range",
    responses={404: {"description": "unknown symbol"}},
)
def actions(request: Request, symbol: str) -> Any:
    ctx = ctx_of(request)
    spec = next((s for s in ctx.universe.specs if s.symbol == symbol), None)
    if spec is None:
        raise HTTPException(404, detail=f"no symbol {symbol} in the universe")
    cal = get_calendar(spec.calendar)
    now = datetime.now(UTC)
    basis = cal.last_closed_session(now) or now.date()
    applied, skipped = adjustments(ctx.warehouse, cal, symbol, "1d", "all")
    report = actions_report(symbol, cal, ctx.warehouse.ledger_entries(symbol), applied, skipped, basis)
    return report
