"""Adjusted views of raw bars, derived on read: never stored, always provable (raw = adjusted / factor)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from marketcov_dagster.lib.prices.factors import Adjust, Applied, Skipped, cumulative

PRICE_COLUMNS = ("open", "high", "low", "close")


def session_days(ts_ms: np.ndarray, tz: ZoneInfo | str) -> np.ndarray:
    """The exchange-local session date (datetime64[D]) of each bar open."""
    local = pd.to_datetime(np.asarray(ts_ms, dtype=np.int64), unit="ms", utc=True).tz_convert(tz)
    return np.asarray(local.tz_localize(None).values.astype("datetime64[D]"))


ADJUSTED_DECIMALS = 10  # adjusted prices out: far finer than any tick, free of float noise


@dataclass(frozen=True)
class Adjusted:
    """An adjusted answer: its mode, basis, the actions applied (and skipped), and the bars with
    the factors each was multiplied by."""

    adjust: Adjust
    as_of: date | None
    applied: Sequence[Applied]
    skipped: Sequence[Skipped]
    bars: pd.DataFrame  # ts, open..volume adjusted, price_factor, volume_factor
    notes: list[str] = field(default_factory=list)

    def header(self) -> dict[str, Any]:
        """Everything of the answer but its bars: what a reader needs to prove each value."""
        return {
            "adjust": self.adjust,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "convention": "back-adjusted (CRSP): prices x price_factor, volume x volume_factor; "
            "raw = adjusted / factor",
            "actions": [a.as_dict() for a in self.applied],
            "skipped": [{**s.action.as_dict(), "reason": s.reason} for s in self.skipped],
        }


def adjusted_chunks(
    chunks: Iterator[pd.DataFrame], tz: ZoneInfo | str, applied: Sequence[Applied], basis: date
) -> Iterator[pd.DataFrame]:
    """Raw chunks of bars adjusted one by one (memory stays flat), rounded to ``ADJUSTED_DECIMALS``."""
    for raw in chunks:
        out = adjust_bars(raw, session_days(raw["ts"].to_numpy(), tz), applied, basis)
        cols = [*PRICE_COLUMNS, "volume"]
        out[cols] = out[cols].round(ADJUSTED_DECIMALS)
        yield out


def adjusted_json_text(
    header: dict[str, Any], chunks: Iterator[pd.DataFrame], bars_text: Callable[[Iterator[pd.DataFrame]], Iterator[str]]
) -> Iterator[str]:
    """``{"adjust", "as_of", "convention", "actions", "skipped", "bars": [...]}``, streamed."""
    head = json.dumps(header, allow_nan=False)
    yield head[:-1] + ', "bars": '
    yield from bars_text(chunks)
    yield "}\n"


def adjust_bars(raw: pd.DataFrame, days: np.ndarray, applied: Sequence[Applied], basis: date) -> pd.DataFrame:
    """``raw`` (canonical bars of the sessions ``days``) back-adjusted into ``basis``'s prices."""
    price_factor, volume_factor = cumulative(applied, days, basis)
    columns = {c: raw[c].to_numpy() for c in raw.columns}  # ts first, any extra columns kept
    for c in PRICE_COLUMNS:
        columns[c] = raw[c].to_numpy(dtype=np.float64) * price_factor
    columns["volume"] = raw["volume"].to_numpy(dtype=np.float64) * volume_factor
    columns["price_factor"] = price_factor
    columns["volume_factor"] = volume_factor
    return pd.DataFrame(columns, copy=False)


def unadjust(adjusted: pd.DataFrame) -> pd.DataFrame:
    """The raw bars back from an adjusted answer: the proof that nothing else was changed."""
    out = adjusted.drop(columns=["price_factor", "volume_factor"])
    for c in PRICE_COLUMNS:
        out[c] = adjusted[c] / adjusted["price_factor"]
    out["volume"] = adjusted["volume"] / adjusted["volume_factor"]
    return out
