"""An offline, deterministic vendor: calendar-true synthetic bars, no network, no keys.

Every bar is a pure function of (symbol, interval, open time), so a range request and a
single-session request give bit-identical bars, and reruns give identical checksums. Minute bars
exist only inside sessions (regular hours, early closes, DST handled by the calendar); daily bars
are stamped at the session open; nothing is returned for bars that have not ended yet.

Prices are raw, as traded: splits and cash dividends of the offline market
(``synthetic_actions``) move them at their ex-dates, and ``fetch_actions`` states those actions
like a vendor's reference endpoint, so the ledger and the adjusted views work offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import canonical, empty_frame
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval
from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.vendors.base import BadSymbolError, Vendor
from marketcov_dagster.lib.vendors.synthetic_actions import (
    ANNOUNCED_DAYS,
    SyntheticAction,
    raw_multipliers,
    synthetic_actions,
)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_DAY_MS = 86_400_000


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        out: np.ndarray = x ^ (x >> np.uint64(31))
        return out


def _unit(seed: np.uint64, ts: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) per timestamp."""
    with np.errstate(over="ignore"):
        h = _splitmix(ts.astype(np.uint64) ^ seed ^ np.uint64(salt * 0x632BE59BD9B4E019 & (2**64 - 1)))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _seed(symbol: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "little"))


class CallLedger(Protocol):
    def record_vendor_call(self, vendor: str, state: str, detail: str, http_status: int | None = None) -> None: ...


class SyntheticVendor(Vendor):
    """Offline vendor. ``calendar_for`` maps a symbol to its trading calendar."""

    name = "synthetic"

    def __init__(
        self,
        calendar_for: Callable[[str], TradingCalendar],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ledger: CallLedger | None = None,
    ) -> None:
        self._calendar_for = calendar_for
        self._clock = clock
        self._ledger = ledger  # where its calls count in vendor status, like a real vendor's

    def _price(self, seed: np.uint64, base: float, t_ms: np.ndarray) -> np.ndarray:
        days = t_ms.astype(np.float64) / _DAY_MS
        phase = float(seed % np.uint64(1000))
        trend = 1.0 + 0.25 * np.sin(2 * np.pi * (days + phase) / 365.0)
        wave = 0.03 * np.sin(2 * np.pi * (days + phase) / 9.0) + 0.004 * np.sin(
            2 * np.pi * t_ms.astype(np.float64) / 3_600_000.0
        )
        return base * (trend + wave)

    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        try:
            cal = self._calendar_for(symbol)
        except KeyError:
            raise BadSymbolError(self.name, f"unknown symbol {symbol!r}") from None
        if self._ledger is not None:
            self._ledger.record_vendor_call(self.name, "ok", f"bars {symbol} {interval}: generated offline")
        now_ms = int(self._clock().timestamp() * 1000)
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        day_lo = datetime.fromtimestamp(start_ms / 1000, cal.tz).date()
        day_hi = datetime.fromtimestamp((end_ms - 1) / 1000, cal.tz).date()
        seed = _seed(symbol)
        base = 20.0 + float(seed % np.uint64(480))
        actions = synthetic_actions(symbol, cal)
        if interval == "1d":
            return self._daily(cal, seed, base, actions, day_lo, day_hi, start_ms, end_ms, now_ms)
        starts = []
        for day in cal.sessions(day_lo, day_hi):
            s = cal.bounds(day).bar_starts(interval)
            starts.append(s[(s >= start_ms) & (s < end_ms) & (s + MINUTE_MS <= now_ms)])
        ts = np.concatenate(starts) if starts else np.array([], dtype=np.int64)
        if len(ts) == 0:
            return empty_frame()
        o, h, lo, c, v = self._minutes(seed, base, actions, ts)
        return canonical(pd.DataFrame({"ts": ts, "open": o, "high": h, "low": lo, "close": c, "volume": v}))

    def _minutes(
        self, seed: np.uint64, base: float, actions: tuple[SyntheticAction, ...], ts: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        pm, vm = raw_multipliers(actions, ts)
        o = np.round(self._price(seed, base, ts) * pm, 2)
        c = np.round(self._price(seed, base, ts + MINUTE_MS) * (1 + 0.002 * (_unit(seed, ts, 1) - 0.5)) * pm, 2)
        h = np.round(np.maximum(o, c) * (1 + 0.003 * _unit(seed, ts, 2)), 2)
        lo = np.round(np.minimum(o, c) * (1 - 0.003 * _unit(seed, ts, 3)), 2)
        v = np.floor(2e4 * (0.2 + _unit(seed, ts, 4)) * vm)
        return o, h, lo, c, v

    def fetch_actions(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]:
        """The splits and cash dividends of ``symbols`` with ex-dates in ``first..last`` that are
        announced by now (``ANNOUNCED_DAYS`` ahead of their ex-date)."""
        horizon = self._clock().date() + timedelta(days=ANNOUNCED_DAYS)
        out: list[CorporateAction] = []
        for symbol in symbols:
            try:
                cal = self._calendar_for(symbol)
            except KeyError:
                raise BadSymbolError(self.name, f"unknown symbol {symbol!r}") from None
            seed = _seed(symbol)
            base = 20.0 + float(seed % np.uint64(480))
            for a in synthetic_actions(symbol, cal):
                if not (first <= a.ex_date <= last and a.ex_date <= horizon):
                    continue
                vendor_id = f"{symbol}:{a.kind}:{a.ex_date.isoformat()}"
                if a.kind == "split":
                    out.append(
                        CorporateAction(symbol, "split", a.ex_date, self.name, vendor_id, a.ratio_from, a.ratio_to)
                    )
                    continue
                previous = cal.sessions(a.ex_date - timedelta(days=10), a.ex_date - timedelta(days=1))[-1]
                last_minute = cal.bounds(previous).bar_starts("1m")[-1:]
                close = float(self._minutes(seed, base, synthetic_actions(symbol, cal), last_minute)[3][0])
                cash = max(0.01, round(a.dividend_yield * close, 2))
                out.append(
                    CorporateAction(symbol, "dividend", a.ex_date, self.name, vendor_id, cash=cash, currency="USD")
                )
        if self._ledger is not None:
            self._ledger.record_vendor_call(self.name, "ok", f"corporate actions of {len(symbols)} symbol(s): offline")
        return out

    def _daily(
        self,
        cal: TradingCalendar,
        seed: np.uint64,
        base: float,
        actions: tuple[SyntheticAction, ...],
        day_lo: date,
        day_hi: date,
        start_ms: int,
        end_ms: int,
        now_ms: int,
    ) -> pd.DataFrame:
        """Each closed session's daily bar, aggregated from its own minute bars: open = first
        open, high = max, low = min, close = last close, volume = sum. So the embedded vendor is
        consistent across intervals by construction."""
        bounds = [
            b
            for b in (cal.bounds(d) for d in cal.sessions(day_lo, day_hi))
            if start_ms <= b.open_ms < end_ms and b.close_ms <= now_ms
        ]
        if not bounds:
            return empty_frame()
        minutes = [b.bar_starts("1m") for b in bounds]
        ts = np.concatenate(minutes)
        first = np.cumsum([0] + [len(m) for m in minutes[:-1]])
        last = first + np.array([len(m) for m in minutes]) - 1
        o, h, lo, c, v = self._minutes(seed, base, actions, ts)
        return canonical(
            pd.DataFrame(
                {
                    "ts": np.array([b.open_ms for b in bounds], dtype=np.int64),
                    "open": o[first],
                    "high": np.maximum.reduceat(h, first),
                    "low": np.minimum.reduceat(lo, first),
                    "close": c[last],
                    "volume": np.add.reduceat(v, first),
                }
            )
        )
