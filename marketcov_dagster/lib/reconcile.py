"""Cross-vendor reconciliation: re-fetch a sample of stored sessions from another vendor of the
chain and compare bar by bar; re-fetch them from the vendor that served them to catch a vendor
that revised its history. Findings go to the remediation log (``vendor_divergence``,
``revised``); stored data is never changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import session_mask, ts_iso, validate_bars
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.universe import ReconciliationSettings
from marketcov_dagster.lib.vendors.base import Vendor, VendorError
from marketcov_dagster.lib.warehouse import Warehouse

PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Comparison:
    """How two answers for one session differ, bar by bar (matched on the bar's open time)."""

    only_ours: int
    only_theirs: int
    price_off: int  # bars with any of OHLC apart by more than the tolerance
    volume_off: int
    example: str

    @property
    def diverges(self) -> bool:
        return bool(self.only_ours or self.only_theirs or self.price_off or self.volume_off)

    def describe(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.only_ours, "bar(s) only stored"),
                (self.only_theirs, "bar(s) only theirs"),
                (self.price_off, "bar(s) with prices apart"),
                (self.volume_off, "bar(s) with volume apart"),
            )
            if n
        ]
        return ", ".join(parts) + (f"; e.g. {self.example}" if self.example else "")


def compare_bars(ours: pd.DataFrame, theirs: pd.DataFrame, price_bps: float, volume_pct: float) -> Comparison:
    merged = ours.merge(theirs, on="ts", how="outer", suffixes=("_o", "_t"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    price_apart = np.zeros(len(both), dtype=bool)
    for p in PRICES:
        o, t = both[f"{p}_o"].to_numpy(), both[f"{p}_t"].to_numpy()
        price_apart |= np.abs(o - t) > np.abs(o) * price_bps / 1e4
    vo, vt = both["volume_o"].to_numpy(), both["volume_t"].to_numpy()
    volume_apart = np.abs(vo - vt) > np.maximum(np.abs(vo), 1.0) * volume_pct / 100
    example = ""
    if price_apart.any() or volume_apart.any():
        row = both[price_apart | volume_apart].iloc[0]
        example = (
            f"{ts_iso(int(row['ts']))} close {row['close_o']:g} vs {row['close_t']:g}, "
            f"volume {row['volume_o']:g} vs {row['volume_t']:g}"
        )
    elif (merged["_merge"] != "both").any():
        example = f"{ts_iso(int(merged[merged['_merge'] != 'both']['ts'].iloc[0]))} missing on one side"
    return Comparison(
        only_ours=int((merged["_merge"] == "left_only").sum()),
        only_theirs=int((merged["_merge"] == "right_only").sum()),
        price_off=int(price_apart.sum()),
        volume_off=int(volume_apart.sum()),
        example=example,
    )


def sample_sessions(stored: Sequence[str], n: int) -> list[str]:
    """``n`` stored sessions spread evenly from the oldest to the newest (all of them if fewer)."""
    ordered = sorted(stored)
    if len(ordered) <= n:
        return ordered
    idx = np.linspace(0, len(ordered) - 1, n).round().astype(int)
    return [ordered[i] for i in sorted(set(idx.tolist()))]


def session_answer(
    vendor: Vendor, calendar: TradingCalendar, symbol: str, interval: Interval, session: date
) -> pd.DataFrame:
    """What ``vendor`` serves for one session now, kept as ingest keeps it: valid bars of the
    session only (extended hours and bad bars are left out)."""
    b = calendar.bounds(session)
    frame = vendor.fetch_bars(
        symbol, interval, datetime.fromtimestamp(b.open_ms / 1000, UTC), datetime.fromtimestamp(b.close_ms / 1000, UTC)
    )
    ts = frame["ts"].to_numpy(dtype=np.int64)
    keep = session_mask(ts, [b], interval) & ~validate_bars(frame, [b], interval).invalid_mask
    out: pd.DataFrame = frame[keep].reset_index(drop=True)
    return out


def reconcile_asset(
    wh: Warehouse,
    calendar: TradingCalendar,
    symbol: str,
    interval: Interval,
    chain: Sequence[Vendor],
    sessions: Sequence[str],
    settings: ReconciliationSettings,
    run_id: str,
) -> list[dict[str, object]]:
    """Remediation entries for the sampled ``sessions`` of one asset (nothing when all agree)."""
    lineage = wh.latest_lineage_many(symbol, interval, list(sessions))
    by_name = {v.name: v for v in chain}
    entries: list[dict[str, object]] = []
    for day, row in sorted(lineage.items()):
        session = date.fromisoformat(day)
        stored = wh.read_bars(symbol, interval, *calendar.partition_window_ms(session))
        stored = stored[session_mask(stored["ts"].to_numpy(dtype=np.int64), [calendar.bounds(session)], interval)]
        base = {"symbol": symbol, "interval": interval, "session": day, "run_id": run_id}
        served_by = by_name.get(row.vendor)
        if served_by is not None:  # has the vendor that served it changed its answer since?
            try:
                now = session_answer(served_by, calendar, symbol, interval, session)
            except VendorError as e:
                entries.append({**base, "vendor": row.vendor, "kind": "vendor_error", "detail": f"reconcile: {e}"})
            else:
                if bars_checksum(now) != row.checksum:
                    cmp = compare_bars(stored.reset_index(drop=True), now, 0.0, 0.0)
                    detail = f"{row.vendor} now answers differently from what it served at {row.written_at:%Y-%m-%d}"
                    entries.append(
                        {**base, "vendor": row.vendor, "kind": "revised", "detail": f"{detail}: {cmp.describe()}"}
                    )
        others = [v for v in chain if v.name != row.vendor]
        if not others:
            continue
        other = others[0]  # the next vendor in the chain: the one a fallback would use
        try:
            theirs = session_answer(other, calendar, symbol, interval, session)
        except VendorError as e:
            entries.append({**base, "vendor": other.name, "kind": "vendor_error", "detail": f"reconcile: {e}"})
            continue
        cmp = compare_bars(
            stored.reset_index(drop=True), theirs, settings.price_tolerance_bps, settings.volume_tolerance_pct
        )
        if cmp.diverges:
            entries.append(
                {
                    **base,
                    "vendor": other.name,
                    "kind": "vendor_divergence",
                    "detail": f"{row.vendor} (stored) vs {other.name}: {cmp.describe()}",
                }
            )
    return entries
