"""Binance spot klines over HTTP: ``GET /api/v3/klines`` (no key).

* Rows are 12-element arrays: ``[open_ms, "o", "h", "l", "c", "v", close_ms, ...]``, prices as
  strings; a kline is identified by its open time. Daily klines are UTC days (``timeZone`` 0).
* No server cursor: pages of up to 1000 rows are walked with ``startTime = last open + interval``.
* ``X-MBX-USED-WEIGHT-1M`` reports the IP's weight used this minute; near the limit we stop
  calling until the next minute. 429 comes with ``Retry-After``; 418 means the IP is banned
  until ``Retry-After`` expires, so nobody calls until then; 451 is a restricted location.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import requests

from marketcov_dagster.lib.intervals import MINUTE_MS, Interval
from marketcov_dagster.lib.vendors.base import (
    BadPayloadError,
    BadSymbolError,
    BannedError,
    RestrictedError,
    VendorError,
)
from marketcov_dagster.lib.vendors.http import MAX_PAGES, HttpVendor

DEFAULT_BASE_URL = "https://data-api.binance.vision"
PAGE = 1000
KLINES_WEIGHT = 2
_STEP = {"1m": MINUTE_MS, "1d": 86_400_000}


class BinanceVendor(HttpVendor):
    name = "binance"

    def _after_response(self, resp: requests.Response) -> None:
        used = resp.headers.get("X-MBX-USED-WEIGHT-1M")
        if used and used.strip().isdigit() and int(used) + KLINES_WEIGHT > 0.9 * self.settings.weight_limit:
            now = self._clock()
            self.ledger.block_vendor(
                self.name, now - now % 60 + 60, f"request weight {used}/{self.settings.weight_limit} used this minute"
            )

    def _classify(self, resp: requests.Response, label: str) -> VendorError:
        code = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = {}
        bcode = body.get("code") if isinstance(body, dict) else None
        msg = str(body.get("msg", "")) if isinstance(body, dict) else ""
        if code == 418:
            wait = self._retry_after(resp) or 120.0
            self.ledger.block_vendor(self.name, self._clock() + wait, f"IP banned (HTTP 418) for {wait:.0f}s")
            return self._error(BannedError, f"{label}: HTTP 418 IP banned for {wait:.0f}s: {msg}")
        if code == 451:
            return self._error(RestrictedError, f"{label}: HTTP 451 service unavailable from a restricted location")
        if bcode == -1121:
            return self._error(BadSymbolError, f"{label}: {msg or 'Invalid symbol.'} (code -1121)")
        return super()._classify(resp, label)

    def _fetch(self, symbol: str, interval: Interval, start_ms: int, end_ms: int) -> pd.DataFrame:
        vendor_symbol = self.settings.symbols.get(symbol, symbol)
        step = _STEP[interval]
        rows: list[Any] = []
        cursor = start_ms
        for _ in range(MAX_PAGES):
            if cursor >= end_ms:
                break
            params = {
                "symbol": vendor_symbol,
                "interval": interval,
                "startTime": cursor,
                "endTime": end_ms - 1,
                "limit": PAGE,
            }
            batch = self._get_json(f"{self.base_url}/api/v3/klines", params, what=f"klines {vendor_symbol} {interval}")
            if not isinstance(batch, list):
                raise self._error(BadPayloadError, f"expected a JSON array of klines, got {type(batch).__name__}")
            if not batch:
                break
            for k in batch:
                if not isinstance(k, list) or len(k) < 7 or not isinstance(k[0], int) or isinstance(k[0], bool):
                    raise self._error(BadPayloadError, f"malformed kline {str(k)[:80]}")
            rows.extend(batch)
            last_open = batch[-1][0]
            if len(batch) < PAGE or last_open + step <= cursor:
                break
            cursor = last_open + step
        else:
            raise self._pages_exhausted()
        return self._frame((k[0], k[1], k[2], k[3], k[4], k[5]) for k in rows)
