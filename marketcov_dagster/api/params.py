"""Query parameters shared by the endpoints, checked strictly: an empty list is an error, not
"everything"; dates are YYYY-MM-DD; unknown symbols are named. Every refusal is a 422 naming the
field, in the shape FastAPI uses for its own validation errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import HTTPException, Query, Request
from fastapi.responses import Response

from marketcov_dagster.lib.universe import AssetSpecification, Universe
from marketcov_dagster.lib.windows import BadRangeError, parse_day

MAX_PAGE_SIZE = 1000


def unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["query", field], "msg": message, "type": "value_error"}])


def csv_list(value: str | None, field: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise unprocessable(field, f"{value!r} has an empty item; give comma-separated values")
    return items


def day(value: str | None, field: str) -> date | None:
    if value is None:
        return None
    try:
        return parse_day(value, field)
    except BadRangeError as e:
        raise unprocessable(field, str(e)) from None


def asset_spec(universe: Universe, symbol: str, interval: str, kind: str = "ohlcv") -> AssetSpecification:
    """The asset of a path's ``{symbol}/{interval}`` (its bars, or its indicator asset); 404 if none."""
    for s in universe.all_specs:
        if s.symbol == symbol and s.interval == interval and s.kind == kind:
            return s
    what = "indicator asset" if kind == "indicators" else "asset"
    raise HTTPException(404, detail=f"no {what} {symbol} {interval} in the universe")


def universe_of(request: Request) -> Universe:
    return request.app.state.ctx.universe  # type: ignore[no-any-return]


@dataclass(frozen=True)
class AssetFilter:
    symbols: list[str] | None
    intervals: list[str] | None
    asset_classes: list[str] | None

    def apply(self, specs: Sequence[AssetSpecification]) -> list[AssetSpecification]:
        return [
            s
            for s in specs
            if (self.symbols is None or s.symbol in self.symbols)
            and (self.intervals is None or s.interval in self.intervals)
            and (self.asset_classes is None or s.asset_class in self.asset_classes)
        ]


def asset_filter(
    request: Request,
    symbols: str | None = Query(None, description="comma-separated symbols, e.g. AAPL,BTCUSDT"),
    intervals: str | None = Query(None, description="comma-separated intervals, e.g. 1d,1m"),
    asset_class: str | None = Query(None, description="comma-separated asset classes"),
) -> AssetFilter:
    return build_filter(universe_of(request), symbols, intervals, asset_class)


def build_filter(
    universe: Universe, symbols: str | None, intervals: str | None, asset_class: str | None
) -> AssetFilter:
    specs = universe.specs
    f = AssetFilter(
        csv_list(symbols, "symbols"), csv_list(intervals, "intervals"), csv_list(asset_class, "asset_class")
    )
    for field, wanted, known in (
        ("symbols", f.symbols, {s.symbol for s in specs}),
        ("intervals", f.intervals, {s.interval for s in specs}),
        ("asset_class", f.asset_classes, {s.asset_class for s in specs}),
    ):
        unknown = sorted(set(wanted or ()) - known)
        if unknown:
            raise unprocessable(field, f"unknown {unknown}; the universe has {sorted(known)}")
    return f


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    def cut(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.offset : self.offset + self.page_size])


def paging(
    page: int = Query(1, ge=1, le=1_000_000, description="1-based page number"),
    page_size: int = Query(100, ge=1, le=MAX_PAGE_SIZE, description=f"items per page, at most {MAX_PAGE_SIZE}"),
) -> Paging:
    return Paging(page, page_size)


def csv_response(rows: Iterable[dict[str, Any]], fields: Sequence[str], filename: str) -> Response:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
