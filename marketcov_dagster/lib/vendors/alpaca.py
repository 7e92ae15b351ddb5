"""Alpaca Market Data v2 stock bars (and v1beta3 crypto minute bars) over HTTP.

* ``GET /v2/stocks/{symbol}/bars`` with ``timeframe=1Min|1Day``, ``start``/``end`` RFC-3339
  (both inclusive), ``limit=10000``, ``feed``, ``adjustment=raw``; ``next_page_token`` is sent back
  as ``page_token`` with otherwise identical parameters until it is null.
* Auth: ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` headers; missing or wrong -> 403.
* Daily bars are stamped at midnight America/New_York; we map them to the session date.
* Minute bars include pre- and post-market trades; with ``session_only`` they are dropped.
* 429 carries no ``Retry-After``; ``X-Ratelimit-Reset`` (epoch seconds) says when to retry.
* Crypto (24/7 calendar, minute bars only): ``GET /v1beta3/crypto/us/bars?symbols=BTC/USDT``,
  bars keyed by symbol; no auth needed (keys raise the rate limit when present).
* Corporate actions: ``GET /v1/corporate-actions`` (``symbols``, ``types``, ``start``/``end``,
  ``limit``, ``page_token``), one object keyed by plural type.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pandas as pd
import requests

from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.prices.actions import ALPACA_TYPES, ActionPayloadError, CorporateAction, alpaca_actions
from marketcov_dagster.lib.vendors.base import BadPayloadError
from marketcov_dagster.lib.vendors.http import MAX_PAGES, HttpVendor, parse_retry_after

DEFAULT_BASE_URL = "https://data.alpaca.markets"
NEW_YORK = ZoneInfo("America/New_York")
PROCESS_LAG_DAYS = 90  # a dividend's process (payment) date may trail its ex-date by weeks
_QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH")


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def crypto_pair(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` (Alpaca writes crypto pairs with a slash)."""
    if "/" in symbol:
        return symbol
    for q in _QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return f"{symbol[: -len(q)]}/{q}"
    return symbol


class AlpacaVendor(HttpVendor):
    name = "alpaca"

    def __init__(self, *, key_id: str = "", secret_key: str = "", **kwargs: Any) -> None:
        super().__init__(secrets=(key_id, secret_key), **kwargs)
        self._key_id = key_id
        self._secret_key = secret_key

    def _headers(self) -> dict[str, str]:
        if not (self._key_id and self._secret_key):
            return {}
        return {"APCA-API-KEY-ID": self._key_id, "APCA-API-SECRET-KEY": self._secret_key}

    def _retry_after(self, resp: requests.Response) -> float | None:
        wait = parse_retry_after(resp.headers.get("Retry-After"), self._clock())
        reset = resp.headers.get("X-Ratelimit-Reset")
        if wait is None and reset and reset.strip().isdigit():
            wait = max(0.0, float(reset) - self._clock())
        return wait

    def _fetch(self, symbol: str, interval: Interval, start_ms: int, end_ms: int) -> pd.DataFrame:
        crypto = self.calendar.always_open
        vendor_symbol = self.settings.symbols.get(symbol) or (crypto_pair(symbol) if crypto else symbol)
        params: dict[str, Any] = {
            "timeframe": "1Day" if interval == "1d" else "1Min",
            # daily bars are stamped at midnight New York time, before the session opens
            "start": rfc3339(self._day_start_ms(start_ms) if interval == "1d" else start_ms),
            "end": rfc3339(end_ms - 1),
            "limit": 10_000,
            "sort": "asc",
        }
        if crypto:
            url = f"{self.base_url}/v1beta3/crypto/us/bars"
            params["symbols"] = vendor_symbol
        else:
            url = f"{self.base_url}/v2/stocks/{quote(vendor_symbol, safe='')}/bars"
            params.update(feed=self.settings.feed, adjustment="raw")  # as traded (RAW_ONLY)
        bars: list[Any] = []
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self._get_json(url, params, what=f"bars {vendor_symbol} {params['timeframe']}")
            if not isinstance(body, dict) or "bars" not in body:
                raise self._error(BadPayloadError, f"expected an object with 'bars', got {type(body).__name__}")
            page = body["bars"]
            if crypto and isinstance(page, dict):
                page = page.get(vendor_symbol)  # multi-symbol shape; a symbol with no data is omitted
            if page is None:
                page = []
            if not isinstance(page, list):
                raise self._error(BadPayloadError, f"'bars' is {type(page).__name__}, not a list")
            bars.extend(page)
            token = body.get("next_page_token")
            if not token:
                break
            if not isinstance(token, str) or token in seen_tokens:
                raise self._error(BadPayloadError, f"bad next_page_token {token!r}")
            seen_tokens.add(token)
            params = {**params, "page_token": token}
        else:
            raise self._pages_exhausted()
        return self._frame(self._rows(bars, interval))

    def fetch_actions(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]:
        """``GET /v1/corporate-actions`` for every symbol at once. Its ``start``/``end`` filter on
        ``process_date`` (a dividend's payment date), so the window reaches ``PROCESS_LAG_DAYS``
        past ``last`` and the ex-dates are filtered here."""
        theirs = {self.settings.symbols.get(s, s): s for s in symbols}
        params: dict[str, Any] = {
            "symbols": ",".join(theirs),
            "types": ",".join(ALPACA_TYPES),
            "start": first.isoformat(),
            "end": (last + timedelta(days=PROCESS_LAG_DAYS)).isoformat(),
            "limit": 1000,
        }
        out: list[CorporateAction] = []
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self._get_json(f"{self.base_url}/v1/corporate-actions", params, what="corporate actions")
            try:
                out.extend(alpaca_actions(body, theirs))
            except ActionPayloadError as e:
                raise self._error(BadPayloadError, str(e).removeprefix("alpaca: ")) from None
            token = body.get("next_page_token")
            if not token:
                return [a for a in out if first <= a.ex_date <= last]
            if not isinstance(token, str) or token in seen_tokens:
                raise self._error(BadPayloadError, f"bad next_page_token {token!r}")
            seen_tokens.add(token)
            params = {**params, "page_token": token}
        raise self._pages_exhausted()

    def _rows(self, bars: list[Any], interval: Interval) -> list[tuple[int, Any, Any, Any, Any, Any]]:
        if not bars:
            return []
        try:
            stamps = pd.to_datetime([b["t"] for b in bars], utc=True, format="ISO8601")
            rows = [(b["o"], b["h"], b["l"], b["c"], b["v"]) for b in bars]
        except (KeyError, TypeError, ValueError) as e:
            raise self._error(BadPayloadError, f"bar lacks a field or has a bad timestamp: {e!r}") from None
        if interval == "1d":
            ts = [self._daily_ts(t.tz_convert(NEW_YORK).date()) for t in stamps]
        else:
            ts = [int(t.value // 1_000_000) for t in stamps]
        return [(t, *r) for t, r in zip(ts, rows, strict=True)]
