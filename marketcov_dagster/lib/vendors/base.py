"""The vendor interface and its typed errors.

A vendor turns ``(symbol, interval, [start, end))`` into a canonical bar frame (see
``marketcov_dagster.lib.bars``). Real HTTP vendors and the offline synthetic vendor implement
the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date, datetime
from typing import TYPE_CHECKING

import pandas as pd

from marketcov_dagster.lib.intervals import Interval

if TYPE_CHECKING:
    from marketcov_dagster.lib.prices.actions import CorporateAction


class VendorError(RuntimeError):
    """Base class: the vendor could not serve the request. ``state`` is the vendor health it implies."""

    state = "ok"

    def __init__(self, vendor: str, message: str) -> None:
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor


class BadSymbolError(VendorError):
    """The vendor does not know the symbol (or refuses it as malformed)."""

    state = "ok"


class BadPayloadError(VendorError):
    """The vendor answered, but the body is not what its documented format promises."""

    state = "bad_payload"


class VendorUnavailableError(VendorError):
    """Timeouts, connection failures, 5xx: retried, then given up on."""

    state = "unavailable"


class RestrictedError(VendorUnavailableError):
    """The vendor refuses this client's location (Binance HTTP 451)."""

    state = "restricted"


class RateLimitedError(VendorError):
    """Too many requests, and waiting it out would take longer than allowed."""

    state = "rate_limited"


class BannedError(RateLimitedError):
    """The vendor banned this client for a while (Binance HTTP 418); nobody calls it until then."""

    state = "banned"


class AuthError(VendorError):
    """Missing, wrong or insufficient credentials (HTTP 401/403)."""

    state = "auth_failing"


class Vendor(ABC):
    name: str

    @abstractmethod
    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        """Bars whose open time lies in ``[start, end)``, as a canonical frame."""

    def fetch_actions(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]:
        """The splits and cash dividends of ``symbols`` with ex-dates in ``first..last``."""
        raise BadSymbolError(self.name, "serves no corporate actions")
