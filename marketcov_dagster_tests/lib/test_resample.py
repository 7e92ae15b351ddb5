"""Resampled candles: anchored at the session open across DST, short at an early close, from
00:00 UTC for crypto; equal to an independent pandas resample; ``matches_source`` catches a
damaged source session and passes again once the session is re-derived."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import TradingCalendar, get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.ingest import SessionNotStartedError, ingest_sessions
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.resample import (
    SourceNotMaterializedError,
    derive_sessions,
    matches_source,
    resample_session,
)
from marketcov_dagster.lib.sources import SourceFailedChecksError
from marketcov_dagster.lib.universe import ConfigError, parse_universe
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.verify import record_verdicts, verify_partitions
from marketcov_dagster.lib.warehouse import PartitionWrite, Warehouse

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
CRYPTO = get_calendar("24/7")
AFTER = datetime(2025, 1, 1, tzinfo=UTC)  # every session below has ended


def _ingest(wh: Warehouse, cal: TradingCalendar, symbol: str, days: list[date]) -> None:
    vendor = SyntheticVendor(lambda _s: cal)
    ingest_sessions(
        symbol=symbol, interval="1m", calendar=cal, sessions=days, vendors=[vendor], warehouse=wh, run_id="src"
    )


def _pandas_candles(minutes: pd.DataFrame, open_ms: int, rule: str) -> pd.DataFrame:
    """The same candles by an independent route: pandas' resample with the origin at the open."""
    idx = pd.to_datetime(minutes["ts"], unit="ms", utc=True)
    frame = minutes.drop(columns="ts").set_index(idx)
    agg = frame.resample(rule, origin=pd.Timestamp(open_ms, unit="ms", tz="UTC"), label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    agg = agg[frame.resample(rule, origin=pd.Timestamp(open_ms, unit="ms", tz="UTC")).size() > 0]
    return agg.reset_index(names="when").assign(
        ts=lambda d: (d["when"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    )


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(f"sqlite:///{tmp_path / 'wh.sqlite'}")


@pytest.mark.parametrize(("interval", "rule"), [("5m", "5min"), ("15m", "15min"), ("1h", "60min")])
def test_candles_across_the_dst_change_equal_pandas(wh: Warehouse, interval: Interval, rule: str) -> None:
    days = [date(2024, 3, 8), date(2024, 3, 11)]  # US DST began on Sunday 2024-03-10
    _ingest(wh, XNYS, "AAPL", days)
    derive_sessions(symbol="AAPL", interval=interval, calendar=XNYS, sessions=days, warehouse=wh, run_id="r", now=AFTER)
    for d in days:
        b = XNYS.bounds(d)
        minutes = wh.read_bars("AAPL", "1m", b.open_ms, b.close_ms)
        got = wh.read_bars("AAPL", interval, b.open_ms, b.close_ms)
        want = _pandas_candles(minutes, b.open_ms, rule)
        assert got["ts"].iloc[0] == b.open_ms  # 14:30Z before the change, 13:30Z after: 09:30 New York
        assert len(got) == {"5m": 78, "15m": 26, "1h": 7}[interval] == XNYS.bounds(d).expected_bars(interval)
        assert got["ts"].tolist() == want["ts"].tolist()
        for c in ("open", "high", "low", "close", "volume"):
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=0, atol=1e-9, err_msg=c)
    opens = [pd.Timestamp(XNYS.bounds(d).open_ms, unit="ms", tz="UTC").hour for d in days]
    assert opens == [14, 13]


def test_the_thanksgiving_early_close_has_42_five_minute_bars_and_a_short_last_hour(wh: Warehouse) -> None:
    day = date(2024, 11, 29)  # XNYS closes at 13:00 New York
    _ingest(wh, XNYS, "AAPL", [day])
    res = derive_sessions(
        symbol="AAPL", interval="5m", calendar=XNYS, sessions=[day], warehouse=wh, run_id="r", now=AFTER
    )
    assert res[0].rows == res[0].expected_rows == 42 and not res[0].gap
    derive_sessions(symbol="AAPL", interval="1h", calendar=XNYS, sessions=[day], warehouse=wh, run_id="r", now=AFTER)
    b = XNYS.bounds(day)
    hours = wh.read_bars("AAPL", "1h", b.open_ms, b.close_ms)
    ny = pd.to_datetime(hours["ts"], unit="ms", utc=True).dt.tz_convert("America/New_York").dt.strftime("%H:%M")
    assert ny.tolist() == ["09:30", "10:30", "11:30", "12:30"]
    assert int(b.bar_ends("1h")[-1]) == b.close_ms  # the 12:30 bar ends at the 13:00 close
    minutes = wh.read_bars("AAPL", "1m", int(hours["ts"].iloc[-1]), b.close_ms)
    assert len(minutes) == 30 and hours["volume"].iloc[-1] == minutes["volume"].sum()
    assert hours["close"].iloc[-1] == minutes["close"].iloc[-1] and hours["open"].iloc[-1] == minutes["open"].iloc[0]


def test_a_crypto_day_starts_at_midnight_utc(wh: Warehouse) -> None:
    day = date(2024, 6, 1)
    _ingest(wh, CRYPTO, "BTCUSDT", [day])
    counts: list[tuple[Interval, int]] = [("5m", 288), ("15m", 96), ("1h", 24)]
    for interval, n in counts:
        res = derive_sessions(
            symbol="BTCUSDT", interval=interval, calendar=CRYPTO, sessions=[day], warehouse=wh, run_id="r", now=AFTER
        )
        assert res[0].rows == n
    got = wh.read_bars("BTCUSDT", "1h", *CRYPTO.partition_window_ms(day))
    assert pd.Timestamp(int(got["ts"].iloc[0]), unit="ms", tz="UTC") == pd.Timestamp("2024-06-01 00:00", tz="UTC")


def test_only_ended_bars_are_written_and_missing_minutes_stay_missing(wh: Warehouse) -> None:
    day = date(2024, 11, 26)
    _ingest(wh, XNYS, "AAPL", [day])
    b = XNYS.bounds(day)
    minutes = wh.read_bars("AAPL", "1m", b.open_ms, b.close_ms)
    # a bucket with no minutes at all gives no bar; one with some minutes gives a bar from those
    holed = minutes[(minutes["ts"] < b.open_ms + 10 * 60_000) | (minutes["ts"] >= b.open_ms + 15 * 60_000)]
    holed = holed[holed["ts"] != b.open_ms + 20 * 60_000].reset_index(drop=True)
    mid = b.open_ms + 62 * 60_000  # 10:32 New York: the 10:30 bucket has not ended
    bars = resample_session(holed, b, "5m", mid)
    assert len(bars) == 11  # 09:30..10:25 is 12 buckets, 09:40 has no minute
    assert b.open_ms + 10 * 60_000 not in bars["ts"].tolist()
    twenty = bars[bars["ts"] == b.open_ms + 20 * 60_000].iloc[0]
    in_twenty = (holed["ts"] >= b.open_ms + 20 * 60_000) & (holed["ts"] < b.open_ms + 25 * 60_000)
    assert twenty["volume"] == holed[in_twenty]["volume"].sum()
    assert int(bars["ts"].max()) == b.open_ms + 55 * 60_000


def test_a_damaged_source_fails_matches_source_and_is_never_derived_from_until_healed(wh: Warehouse) -> None:
    days = [date(2024, 11, 26), date(2024, 11, 27)]
    _ingest(wh, XNYS, "AAPL", days)
    kw = {"symbol": "AAPL", "calendar": XNYS, "warehouse": wh, "now": AFTER}
    derive_sessions(**kw, interval="5m", sessions=days, run_id="r1")  # type: ignore[arg-type]
    assert all(o.passed for o in matches_source(wh, XNYS, "AAPL", "5m", days, AFTER).values())
    built = wh.latest_lineage("AAPL", "5m", "2024-11-27")
    source = wh.latest_lineage("AAPL", "1m", "2024-11-27")
    assert built is not None and source is not None and built.source_checksum == source.checksum
    b = XNYS.bounds(days[1])
    wh.execute(
        "UPDATE bars SET high = high + 1, volume = volume + 7 WHERE symbol='AAPL' AND interval='1m' AND ts = :t",
        {"t": b.open_ms + 7 * 60_000},
    )
    found = matches_source(wh, XNYS, "AAPL", "5m", days, AFTER)
    assert found["2024-11-26"].passed
    bad = found["2024-11-27"]
    assert not bad.passed and bad.metadata["different"] == 1 and "re-derive" in bad.description

    # the source's checks run (as after every write, or in marketcov verify): its checksum fails,
    # and nothing is derived from it; the run names the partition and the check
    outcomes = verify_partitions(
        warehouse=wh, calendar=XNYS, symbol="AAPL", interval="1m", sessions=days, min_completeness=0.9, now=AFTER
    )
    record_verdicts(wh, "AAPL", "1m", outcomes, "check-run")
    before = wh.read_bars("AAPL", "5m", b.open_ms, b.close_ms)
    with pytest.raises(SourceFailedChecksError, match=r"ohlcv/1m/AAPL 2024-11-27 failed checksum_matches"):
        derive_sessions(**kw, interval="5m", sessions=days, run_id="r2")  # type: ignore[arg-type]
    assert wh.read_bars("AAPL", "5m", b.open_ms, b.close_ms).equals(before)  # nothing written
    assert wh.latest_lineage("AAPL", "5m", "2024-11-27") == built

    # derived before any check ran, the damage is copied, but matches_source does not turn green:
    # the source no longer hashes to what the derived partition was built from
    wh.execute("DELETE FROM check_results")
    derive_sessions(**kw, interval="5m", sessions=[days[1]], run_id="r3")  # type: ignore[arg-type]
    copied = matches_source(wh, XNYS, "AAPL", "5m", days, AFTER)["2024-11-27"]
    assert not copied.passed and "no longer match their checksum" in copied.description, copied

    # healed: the source re-fetched (its bars and checksum as written first), then re-derived
    _ingest(wh, XNYS, "AAPL", days[1:])
    assert wh.failed_verdicts("AAPL", "1m", ["2024-11-27"]) == {}  # a rewrite clears the old verdict
    derive_sessions(**kw, interval="5m", sessions=[days[1]], run_id="r4")  # type: ignore[arg-type]
    assert all(o.passed for o in matches_source(wh, XNYS, "AAPL", "5m", days, AFTER).values())
    lineage = wh.latest_lineage("AAPL", "5m", "2024-11-27")
    assert lineage is not None and lineage.vendor == "resampled:1m" and lineage.checksum == built.checksum


def test_a_rewritten_source_fails_matches_source_until_rederived(wh: Warehouse) -> None:
    day = date(2024, 11, 27)
    _ingest(wh, XNYS, "AAPL", [day])
    derive_sessions(symbol="AAPL", interval="1h", calendar=XNYS, sessions=[day], warehouse=wh, run_id="r1", now=AFTER)
    b = XNYS.bounds(day)
    minutes = wh.read_bars("AAPL", "1m", b.open_ms, b.close_ms)
    # the vendor revised one minute's volume (a real write: new checksum, a recorded revision)
    minutes.loc[3, "volume"] += 100
    w0, w1 = XNYS.partition_window_ms(day, "1m")
    write = PartitionWrite("AAPL", "1m", day, w0, w1, minutes, "synthetic", len(minutes), bars_checksum(minutes))
    wh.write_partitions([write], "revise")
    stale = matches_source(wh, XNYS, "AAPL", "1h", [day], AFTER)[day.isoformat()]
    assert not stale.passed and "re-derive" in stale.description
    derive_sessions(symbol="AAPL", interval="1h", calendar=XNYS, sessions=[day], warehouse=wh, run_id="r2", now=AFTER)
    assert matches_source(wh, XNYS, "AAPL", "1h", [day], AFTER)[day.isoformat()].passed
    rebuilt = wh.latest_lineage("AAPL", "1h", day.isoformat())
    assert rebuilt is not None and rebuilt.source_checksum == bars_checksum(minutes)


def test_nothing_is_derived_without_its_source_or_before_the_session(wh: Warehouse) -> None:
    days = [date(2024, 11, 26), date(2024, 11, 27)]
    _ingest(wh, XNYS, "AAPL", days[:1])
    with pytest.raises(SourceNotMaterializedError, match=r"1 session\(s\) \(2024-11-27\).*ohlcv/1m/AAPL"):
        derive_sessions(symbol="AAPL", interval="5m", calendar=XNYS, sessions=days, warehouse=wh, run_id="r", now=AFTER)
    with pytest.raises(SessionNotStartedError):
        derive_sessions(
            symbol="AAPL",
            interval="5m",
            calendar=XNYS,
            sessions=days,
            warehouse=wh,
            run_id="r",
            now=datetime(2024, 11, 1, tzinfo=UTC),
        )
    assert wh.count_bars(interval="5m") == 0  # refused before writing anything


def _universe(intervals: Mapping[str, object], ac_intervals: list[str] | None = None) -> None:
    parse_universe(
        {
            "intervals": intervals,
            "asset_classes": {
                "eq": {
                    "calendar": "XNYS",
                    "vendors": ["synthetic"],
                    "intervals": ac_intervals or ["1m"],
                    "symbols": ["A"],
                }
            },
        }
    )


def test_derived_intervals_are_configured_under_intervals_with_their_source() -> None:
    u = parse_universe(
        {
            "intervals": {"1m": {"window_days": 60, "min_completeness": 0.9}, "5m": {"from": "1m", "window_days": 30}},
            "asset_classes": {
                "eq": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1m"], "symbols": ["A"]}
            },
        }
    )
    five = next(s for s in u.specs if s.interval == "5m")
    assert five.derived_from == "1m" and five.vendors == () and five.window_days == 30
    assert five.min_completeness == 0.9 and five.expire  # unset settings follow the source's
    assert five.source_key_path == ("ohlcv", "1m", "A")
    for bad, why in (
        ({"1m": {"window_days": 60}, "5m": {"window_days": 30}}, "resampled from 1m: add 'from: 1m'"),
        ({"1m": {"window_days": 60}, "5m": {"from": "1d", "window_days": 30}}, "resampled from 1m"),
        ({"1m": {"window_days": 60}, "5m": {"from": "1m", "window_days": 90}}, "beyond its source 1m's 60 days"),
        ({"1m": {"window_days": 60, "from": "1d"}}, "fetched from vendors, not derived"),
    ):
        with pytest.raises(ConfigError, match=why):
            _universe(bad)
    with pytest.raises(ConfigError, match="'5m' is derived"):
        _universe({"1m": {"window_days": 60}, "5m": {"from": "1m"}}, ["1m", "5m"])
