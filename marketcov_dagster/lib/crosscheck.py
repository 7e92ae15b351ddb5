"""Cross-interval truth: each stored daily bar against its session's stored minute bars.

High must be at least every minute high and low at most every minute low; open, close and volume
may differ within tolerances, since a vendor's daily bar includes auction prints its minutes
lack. A session without minute bars (outside the minute window, or not fetched) has nothing to
compare and passes, saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.universe import CrossIntervalSettings
from marketcov_dagster.lib.verify import DAILY_MATCHES_MINUTES, CheckOutcome
from marketcov_dagster.lib.warehouse import Warehouse

PRICE_EPSILON = 1e-9  # prices are stored as float64: equal is equal within rounding


def _off_bps(a: float, b: float) -> float:
    return abs(a - b) / abs(b) * 1e4 if b else (0.0 if a == b else float("inf"))


def daily_vs_minutes(
    warehouse: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    sessions: Sequence[date],
    settings: CrossIntervalSettings,
) -> dict[str, CheckOutcome]:
    """One outcome per session (keyed by ISO date); two queries for the whole range."""
    days = sorted(set(sessions))
    if not days:
        return {}
    lo, hi = calendar.partition_window_ms(days[0])[0], calendar.partition_window_ms(days[-1])[1]
    daily = warehouse.read_bars(symbol, "1d", lo, hi)
    minutes = warehouse.read_bars(symbol, "1m", lo, hi)
    mts = minutes["ts"].to_numpy(dtype=np.int64)
    dts = daily["ts"].to_numpy(dtype=np.int64)
    out: dict[str, CheckOutcome] = {}
    for d in days:
        w0, w1 = calendar.partition_window_ms(d)
        b = calendar.bounds(d)
        i0, i1 = np.searchsorted(mts, [b.open_ms, b.close_ms])
        rows = np.nonzero((dts >= w0) & (dts < w1))[0]
        out[d.isoformat()] = _compare(minutes.iloc[i0:i1], daily.iloc[rows], settings)
    return out


def _compare(minutes: pd.DataFrame, daily: pd.DataFrame, s: CrossIntervalSettings) -> CheckOutcome:
    if daily.empty or minutes.empty:
        what = "no daily bar" if daily.empty else "no minute bars stored for this session"
        return CheckOutcome(DAILY_MATCHES_MINUTES, True, f"{what}: nothing to compare", {"compared": False}, s.severity)
    day = daily.iloc[0]
    m_high, m_low = float(minutes["high"].max()), float(minutes["low"].min())
    m_open, m_close = float(minutes["open"].iloc[0]), float(minutes["close"].iloc[-1])
    m_volume = float(minutes["volume"].sum())
    problems = []
    if float(day["high"]) < m_high - PRICE_EPSILON:
        problems.append(f"high {day['high']:g} < minute high {m_high:g}")
    if float(day["low"]) > m_low + PRICE_EPSILON:
        problems.append(f"low {day['low']:g} > minute low {m_low:g}")
    for name, value, ref in (("open", float(day["open"]), m_open), ("close", float(day["close"]), m_close)):
        off = _off_bps(value, ref)
        if off > s.open_close_tolerance_bps:
            problems.append(f"{name} {value:g} vs minutes {ref:g} ({off:.1f} bps > {s.open_close_tolerance_bps:g})")
    vol_off = abs(float(day["volume"]) - m_volume) / max(m_volume, 1.0) * 100
    if vol_off > s.volume_tolerance_pct:
        problems.append(
            f"volume {day['volume']:g} vs minutes {m_volume:g} ({vol_off:.1f}% > {s.volume_tolerance_pct:g}%)"
        )
    metadata = {
        "compared": True,
        "minute_bars": len(minutes),
        "minute_high": m_high,
        "minute_low": m_low,
        "volume_off_pct": round(vol_off, 3),
    }
    if problems:
        return CheckOutcome(DAILY_MATCHES_MINUTES, False, "; ".join(problems), metadata, s.severity)
    return CheckOutcome(
        DAILY_MATCHES_MINUTES, True, f"daily bar agrees with {len(minutes)} minute bars", metadata, s.severity
    )
