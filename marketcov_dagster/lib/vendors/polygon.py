"""Polygon.io (Massive) aggregates over HTTP: ``GET /v2/aggs/ticker/{T}/range/1/{minute|day}/{from}/{to}``.

* ``from``/``to`` are inclusive epoch-ms; ``adjusted=false`` (bars as traded), ``sort=asc``, ``limit=50000``.
* Auth: ``apiKey`` query parameter. ``next_url`` pages carry a cursor but not the key, so the
  key is added again; ``next_url`` is followed only on the configured scheme and host, never elsewhere
  (an ``http://`` page from an ``https://`` base would carry the key in clear).
* ``results`` is omitted when empty; ``status`` is ``OK`` (or ``DELAYED``) on success.
* Daily bars start at midnight America/New_York; minute bars cover extended hours.
* Free tier: 5 requests per minute, no rate-limit headers, no ``Retry-After``.
* Corporate actions: ``GET /stocks/v1/splits`` (``execution_date.gte/.lte``) and
  ``GET /stocks/v1/dividends`` (``ex_dividend_date.gte/.lte``), the successors since February
  2026, or with ``actions_api: v3_reference`` the deprecated ``/v3/reference/splits`` and
  ``/v3/reference/dividends``; one ticker per request, ``limit=1000``, paged by ``next_url``
  like the aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pandas as pd

from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.prices.actions import (
    ActionPayloadError,
    CorporateAction,
    polygon_dividends,
    polygon_splits,
    polygon_v1_dividends,
    polygon_v1_splits,
)
from marketcov_dagster.lib.vendors.base import BadPayloadError
from marketcov_dagster.lib.vendors.http import MAX_PAGES, HttpVendor, origin

DEFAULT_BASE_URL = "https://api.polygon.io"
NEW_YORK = ZoneInfo("America/New_York")
Parse = Callable[[Any, Mapping[str, str]], list[CorporateAction]]
ACTIONS_APIS: dict[str, tuple[tuple[str, str, Parse], ...]] = {  # path, date field, parser
    "stocks_v1": (
        ("/stocks/v1/splits", "execution_date", polygon_v1_splits),
        ("/stocks/v1/dividends", "ex_dividend_date", polygon_v1_dividends),
    ),
    "v3_reference": (
        ("/v3/reference/splits", "execution_date", polygon_splits),
        ("/v3/reference/dividends", "ex_dividend_date", polygon_dividends),
    ),
}


class PolygonVendor(HttpVendor):
    name = "polygon"

    def __init__(self, *, api_key: str = "", **kwargs: Any) -> None:
        super().__init__(secrets=(api_key,), **kwargs)
        self._api_key = api_key

    def _fetch(self, symbol: str, interval: Interval, start_ms: int, end_ms: int) -> pd.DataFrame:
        ticker = self.settings.symbols.get(symbol, symbol)
        timespan = "day" if interval == "1d" else "minute"
        first = self._day_start_ms(start_ms) if interval == "1d" else start_ms
        url = f"{self.base_url}/v2/aggs/ticker/{quote(ticker, safe='')}/range/1/{timespan}/{first}/{end_ms - 1}"
        params: dict[str, Any] = {
            "adjusted": "false",  # as traded: one basis for every vendor (RAW_ONLY)
            "sort": "asc",
            "limit": 50_000,
            "apiKey": self._api_key,
        }
        home = origin(self.base_url)
        results: list[Any] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self._get_json(url, params, what=f"aggs {ticker} {timespan}")
            if not isinstance(body, dict) or body.get("status") not in ("OK", "DELAYED"):
                status = body.get("status") if isinstance(body, dict) else type(body).__name__
                raise self._error(BadPayloadError, f"aggs {ticker}: unexpected status {status!r}")
            page = body.get("results") or []
            if not isinstance(page, list):
                raise self._error(BadPayloadError, f"'results' is {type(page).__name__}, not a list")
            results.extend(page)
            next_url = body.get("next_url")
            if not next_url:
                break
            if not isinstance(next_url, str) or origin(next_url) != home or next_url in seen:
                raise self._error(BadPayloadError, "next_url is not a new page on the configured scheme and host")
            seen.add(next_url)
            url, params = next_url, {"apiKey": self._api_key}  # next_url does not carry the key
        else:
            raise self._pages_exhausted()
        return self._frame(self._rows(results, interval))

    def fetch_actions(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]:
        out: list[CorporateAction] = []
        for symbol in symbols:
            ticker = self.settings.symbols.get(symbol, symbol)
            ours = {ticker: symbol}
            for path, field, parse in ACTIONS_APIS[self.settings.actions_api]:
                params = {"ticker": ticker, f"{field}.gte": first.isoformat(), f"{field}.lte": last.isoformat()}
                for body in self._list_pages(f"{self.base_url}{path}", params, f"{path} {ticker}"):
                    try:
                        out.extend(parse(body, ours))
                    except ActionPayloadError as e:
                        raise self._error(BadPayloadError, str(e).removeprefix("polygon: ")) from None
        return out

    def _list_pages(self, url: str, params: dict[str, Any], what: str) -> list[Any]:
        """Every page of a list endpoint, following ``next_url`` on the configured origin only."""
        params = {**params, "limit": 1000, "apiKey": self._api_key}
        home = origin(self.base_url)
        pages: list[Any] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self._get_json(url, params, what=what)
            if not isinstance(body, dict) or body.get("status") not in ("OK", "DELAYED"):
                status = body.get("status") if isinstance(body, dict) else type(body).__name__
                raise self._error(BadPayloadError, f"{what}: unexpected status {status!r}")
            pages.append(body)
            next_url = body.get("next_url")
            if not next_url:
                return pages
            if not isinstance(next_url, str) or origin(next_url) != home or next_url in seen:
                raise self._error(BadPayloadError, "next_url is not a new page on the configured scheme and host")
            seen.add(next_url)
            url, params = next_url, {"apiKey": self._api_key}
        raise self._pages_exhausted()

    def _rows(self, results: list[Any], interval: Interval) -> list[tuple[int, Any, Any, Any, Any, Any]]:
        rows = []
        for r in results:
            try:
                t = r["t"]
                if isinstance(t, bool) or not isinstance(t, int):
                    raise TypeError(f"t is {type(t).__name__}")
                row = (r["o"], r["h"], r["l"], r["c"], r["v"])
            except (KeyError, TypeError) as e:
                raise self._error(BadPayloadError, f"aggregate lacks a field or has a bad 't': {e!r}") from None
            if interval == "1d":
                t = self._daily_ts(pd.Timestamp(t, unit="ms", tz="UTC").tz_convert(NEW_YORK).date())
            rows.append((t, *row))
        return rows
