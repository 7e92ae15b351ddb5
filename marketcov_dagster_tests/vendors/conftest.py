"""Real vendor clients against real loopback servers speaking each vendor's wire format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import DEFAULT_VENDOR_SETTINGS, VendorSettings
from marketcov_dagster.lib.vendors.alpaca import AlpacaVendor
from marketcov_dagster.lib.vendors.binance import BinanceVendor
from marketcov_dagster.lib.vendors.http import HttpVendor
from marketcov_dagster.lib.vendors.polygon import PolygonVendor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import FakeAlpaca, FakeBinance, FakePolygon, FakeVendorServer

# fast, but the same discipline: short timeouts and backoff so fault tests take seconds
FAST: dict[str, Any] = {
    "requests_per_minute": 60_000,
    "burst": 100,
    "connect_timeout": 1.0,
    "read_timeout": 0.5,
    "max_attempts": 4,
    "backoff_base": 0.05,
    "backoff_max": 0.2,
    "max_wait": 5.0,
    "rate_window_seconds": 1.0,
}


def settings(name: str, **overrides: Any) -> VendorSettings:
    return VendorSettings(**{**DEFAULT_VENDOR_SETTINGS[name], **FAST, **overrides})


def client(
    name: str,
    server: FakeVendorServer,
    ledger: Warehouse,
    calendar: str = "",
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    **overrides: Any,
) -> HttpVendor:
    """``name``'s client against ``server``; ``overrides`` change its settings, ``clock`` and
    ``sleep`` replace the real ones."""
    cal = get_calendar(calendar or ("24/7" if name == "binance" else "XNYS"))
    common: dict[str, Any] = {
        "base_url": server.url,
        "settings": settings(name, **overrides),
        "calendar": cal,
        "ledger": ledger,
    }
    common.update({k: v for k, v in (("clock", clock), ("sleep", sleep)) if v is not None})
    if name == "alpaca":
        return AlpacaVendor(key_id=FakeAlpaca.KEY_ID, secret_key=FakeAlpaca.SECRET, **common)
    if name == "polygon":
        return PolygonVendor(api_key=FakePolygon.API_KEY, **common)
    return BinanceVendor(**common)


SERVERS: dict[str, type[FakeVendorServer]] = {"alpaca": FakeAlpaca, "binance": FakeBinance, "polygon": FakePolygon}


@pytest.fixture
def alpaca_server() -> Iterator[FakeVendorServer]:
    with FakeAlpaca() as s:
        yield s


@pytest.fixture
def binance_server() -> Iterator[FakeVendorServer]:
    with FakeBinance() as s:
        yield s


@pytest.fixture
def polygon_server() -> Iterator[FakeVendorServer]:
    with FakePolygon() as s:
        yield s
