"""Builds a vendor chain from names, settings and credentials; the one place that knows every vendor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.universe import VendorSettings
from marketcov_dagster.lib.vendors import alpaca, binance, polygon
from marketcov_dagster.lib.vendors.base import AuthError, Vendor
from marketcov_dagster.lib.vendors.http import VendorLedger
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor

# environment variables: keys are secrets (read only through dg.EnvVar), base URLs are not
ALPACA_KEY_ID_ENV = "ALPACA_API_KEY_ID"
ALPACA_SECRET_KEY_ENV = "ALPACA_API_SECRET_KEY"
POLYGON_API_KEY_ENV = "POLYGON_API_KEY"
SECRET_ENVS = (ALPACA_KEY_ID_ENV, ALPACA_SECRET_KEY_ENV, POLYGON_API_KEY_ENV)
DEFAULT_BASE_URLS = {
    "alpaca": alpaca.DEFAULT_BASE_URL,
    "binance": binance.DEFAULT_BASE_URL,
    "polygon": polygon.DEFAULT_BASE_URL,
}
BASE_URL_ENVS = {name: f"MARKETCOV_{name.upper()}_BASE_URL" for name in DEFAULT_BASE_URLS}


@dataclass(frozen=True)
class Credentials:
    alpaca_key_id: str = ""
    alpaca_secret_key: str = ""
    polygon_api_key: str = ""
    base_urls: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print keys
        return f"Credentials(base_urls={dict(self.base_urls)})"


class _MissingKeyVendor(Vendor):
    """Stands in for a vendor whose keys are not configured: fails without calling anyone."""

    def __init__(self, name: str, envs: Sequence[str]) -> None:
        self.name = name
        self._envs = envs

    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        raise AuthError(self.name, f"no API key: set {' and '.join(self._envs)}")

    def fetch_actions(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]:
        raise AuthError(self.name, f"no API key: set {' and '.join(self._envs)}")


def make_chain(
    names: Sequence[str],
    calendar: TradingCalendar,
    settings: Mapping[str, VendorSettings],
    ledger: VendorLedger,
    credentials: Credentials,
) -> list[Vendor]:
    out: list[Vendor] = []
    for name in names:
        if name == "synthetic":
            out.append(SyntheticVendor(lambda _symbol: calendar, ledger=ledger))
            continue
        common: dict[str, Any] = {
            "base_url": credentials.base_urls.get(name) or DEFAULT_BASE_URLS[name],
            "settings": settings[name],
            "calendar": calendar,
            "ledger": ledger,
        }
        if name == "alpaca":
            has_keys = bool(credentials.alpaca_key_id and credentials.alpaca_secret_key)
            if not has_keys and not calendar.always_open:  # crypto bars need no key
                out.append(_MissingKeyVendor(name, (ALPACA_KEY_ID_ENV, ALPACA_SECRET_KEY_ENV)))
                continue
            out.append(
                alpaca.AlpacaVendor(
                    key_id=credentials.alpaca_key_id, secret_key=credentials.alpaca_secret_key, **common
                )
            )
        elif name == "binance":
            out.append(binance.BinanceVendor(**common))
        elif name == "polygon":
            if not credentials.polygon_api_key:
                out.append(_MissingKeyVendor(name, (POLYGON_API_KEY_ENV,)))
                continue
            out.append(polygon.PolygonVendor(api_key=credentials.polygon_api_key, **common))
        else:
            raise ValueError(f"unknown vendor {name!r}")
    return out
