"""The vendor interface and its typed errors.

A vendor turns ``(symbol, interval, [start, end))`` into a canonical bar frame (see
``marketcov_dagster.lib.bars``). Real HTTP vendors and the offline synthetic vendor implement
the same interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

import pandas as pd

from marketcov_dagster.lib.intervals import Interval


class VendorError(RuntimeError):
    """Base class: the vendor could not serve the request."""

    def __init__(self, vendor: str, message: str) -> None:
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor


class BadSymbolError(VendorError):
    pass


class BadPayloadError(VendorError):
    pass


class VendorUnavailableError(VendorError):
    pass


class RateLimitedError(VendorError):
    pass


class Vendor(ABC):
    name: str

    @abstractmethod
    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        """Bars whose open time lies in ``[start, end)``, as a canonical frame."""
