"""``GET /api/bars/{symbol}/{interval}``: stored bars of one asset for a session range, streamed as
strict JSON or CSV, with its indicators on request; the same reader and writers as
``marketcov bars``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
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
from marketcov_dagster.lib.windows import BadRangeError

router = APIRouter(prefix="/api")
MISSING_HEADER = "X-Bars-Without-Indicators"


@router.get(
    "/bars/{symbol}/{interval}",
    response_model=list[m.Bar],
    summary="Stored bars of one asset for a session range (and their indicators), streamed",
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
) -> Any:
    ctx = ctx_of(request)
    spec = asset_spec(ctx.universe, symbol, interval)
    first, last = day(start, "start"), day(end, "end")
    if indicators and interval not in ctx.universe.config.indicators.intervals:
        raise unprocessable("indicators", f"the universe computes no indicators for {interval}")
    cal = get_calendar(spec.calendar)
    try:
        sessions = export_sessions(cal, spec.window_days, first, last, datetime.now(UTC))
    except BadRangeError as e:
        raise unprocessable("start" if first else "end", str(e)) from None
    span = session_span_ms(cal, sessions)
    chunks = iter_bars(ctx.warehouse, symbol, interval, *span)
    headers = {}
    if indicators:
        chunks = with_indicators(ctx.warehouse, symbol, interval, chunks)
        headers[MISSING_HEADER] = str(ctx.warehouse.bars_without_indicators(symbol, interval, *span))
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="bars_{symbol}_{interval}.csv"'
        return StreamingResponse(csv_text(chunks), media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(json_text(chunks), media_type="application/json", headers=headers)
