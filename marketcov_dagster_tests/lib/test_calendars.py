"""Calendar truth: holidays, early closes and DST, as the synthetic vendor and checks see them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
CRYPTO = get_calendar("24/7")


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def test_holidays_and_weekends_are_not_sessions() -> None:
    # week of US Thanksgiving 2024: Thu 28 closed, Fri 29 early close
    assert XNYS.sessions(date(2024, 11, 25), date(2024, 12, 2)) == [
        date(2024, 11, 25),
        date(2024, 11, 26),
        date(2024, 11, 27),
        date(2024, 11, 29),
        date(2024, 12, 2),
    ]
    assert not XNYS.is_session(date(2024, 7, 4))
    assert XNYS.non_sessions(date(2024, 11, 25), date(2024, 11, 30), weekdays_only=True) == [date(2024, 11, 28)]
    assert XNYS.non_sessions(date(2024, 11, 28), date(2024, 12, 1)) == [
        date(2024, 11, 28),
        date(2024, 11, 30),
        date(2024, 12, 1),
    ]


def test_early_close_has_210_minutes() -> None:
    b = XNYS.bounds(date(2024, 11, 29))
    assert utc(b.close_ms) == pd.Timestamp("2024-11-29 18:00", tz="UTC")  # 13:00 New York
    assert b.expected_bars("1m") == 210
    assert XNYS.bounds(date(2024, 11, 27)).expected_bars("1m") == 390


def test_dst_change_week_moves_the_utc_open() -> None:
    # US DST began Sunday 2024-03-10: the open moves from 14:30Z to 13:30Z
    assert utc(XNYS.bounds(date(2024, 3, 8)).open_ms) == pd.Timestamp("2024-03-08 14:30", tz="UTC")
    assert utc(XNYS.bounds(date(2024, 3, 11)).open_ms) == pd.Timestamp("2024-03-11 13:30", tz="UTC")
    assert XNYS.bounds(date(2024, 3, 11)).expected_bars("1m") == 390


def test_synthetic_vendor_is_calendar_true() -> None:
    v = SyntheticVendor(lambda _s: XNYS)
    df = v.fetch_bars("AAPL", "1m", datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 16, tzinfo=UTC))
    by_day = pd.to_datetime(df["ts"], unit="ms", utc=True).dt.tz_convert("America/New_York").dt.date.value_counts()
    assert len(by_day) == 10 and set(by_day) == {390}
    opens = {XNYS.bounds(d).open_ms for d in XNYS.sessions(date(2024, 3, 4), date(2024, 3, 15))}
    assert opens <= set(df["ts"])
    thanksgiving = v.fetch_bars("AAPL", "1m", datetime(2024, 11, 28, tzinfo=UTC), datetime(2024, 11, 30, tzinfo=UTC))
    days = pd.to_datetime(thanksgiving["ts"], unit="ms", utc=True).dt.tz_convert("America/New_York").dt.date
    assert days.value_counts().to_dict() == {date(2024, 11, 29): 210}
    daily = v.fetch_bars("AAPL", "1d", datetime(2024, 11, 25, tzinfo=UTC), datetime(2024, 12, 3, tzinfo=UTC))
    assert list(daily["ts"]) == [XNYS.bounds(d).open_ms for d in XNYS.sessions(date(2024, 11, 25), date(2024, 12, 2))]


def test_synthetic_vendor_is_deterministic_and_range_independent() -> None:
    v = SyntheticVendor(lambda _s: XNYS)
    whole = v.fetch_bars("MSFT", "1m", datetime(2024, 3, 7, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC))
    part = v.fetch_bars("MSFT", "1m", datetime(2024, 3, 11, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC))
    tail = whole[whole["ts"] >= part["ts"].iloc[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, part)
    other = v.fetch_bars("AAPL", "1m", datetime(2024, 3, 11, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC))
    assert not other["close"].equals(part["close"])
    assert (
        (part["low"] <= part[["open", "close"]].min(axis=1)) & (part["high"] >= part[["open", "close"]].max(axis=1))
    ).all()


def test_synthetic_vendor_returns_nothing_from_the_future() -> None:
    now = datetime(2024, 3, 8, 15, 0, tzinfo=UTC)  # 10:00 New York, 30 minutes into the session
    v = SyntheticVendor(lambda _s: XNYS, clock=lambda: now)
    df = v.fetch_bars("AAPL", "1m", datetime(2024, 3, 8, tzinfo=UTC), datetime(2024, 3, 9, tzinfo=UTC))
    assert len(df) == 30
    assert v.fetch_bars("AAPL", "1d", datetime(2024, 3, 8, tzinfo=UTC), datetime(2024, 3, 9, tzinfo=UTC)).empty


def test_crypto_days_have_1440_minutes_every_day() -> None:
    assert CRYPTO.sessions(date(2024, 3, 9), date(2024, 3, 10)) == [date(2024, 3, 9), date(2024, 3, 10)]
    assert CRYPTO.bounds(date(2024, 3, 10)).expected_bars("1m") == 1440
    v = SyntheticVendor(lambda _s: CRYPTO)
    df = v.fetch_bars("BTCUSDT", "1m", datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC))
    assert len(df) == 2880


def test_session_index_matches_the_calendar_including_lunch_breaks() -> None:
    import numpy as np

    from marketcov_dagster.lib.bars import session_index

    for name in ("XNYS", "XHKG"):
        cal = get_calendar(name)
        bounds = [cal.bounds(d) for d in cal.sessions(date(2024, 11, 25), date(2024, 12, 6))]
        allowed = np.concatenate([b.bar_starts("1m") for b in bounds])
        noise = np.array([bounds[0].open_ms - 60_000, bounds[0].open_ms + 30_000, bounds[-1].close_ms], dtype=np.int64)
        ts = np.sort(np.concatenate([allowed, noise]))
        idx = session_index(ts, bounds, "1m")
        assert set(ts[idx >= 0]) == set(allowed) and (idx[np.isin(ts, noise)] == -1).all()
        for k, b in enumerate(bounds):  # each bar is attributed to its own session
            assert set(ts[idx == k]) == set(b.bar_starts("1m"))
        if name == "XHKG":
            assert any(b.break_start_ms for b in bounds)  # the lunch break was exercised
        opens = np.array([b.open_ms for b in bounds], dtype=np.int64)
        daily = np.sort(np.append(opens, opens[0] + 60_000))  # one stamp that is not a session open
        assert list(session_index(daily, bounds, "1d")) == [0, -1, *range(1, len(bounds))]


@pytest.mark.parametrize("name", ["XNYS", "24/7", "XTKS"])
def test_partition_windows_at_once_equal_one_by_one(name: str) -> None:
    cal = get_calendar(name)
    days = cal.sessions(date(2023, 1, 1), date(2024, 12, 31))  # both DST changes, every holiday
    assert cal.partition_windows_ms(days) == [cal.partition_window_ms(d) for d in days]
    assert cal.partition_windows_ms([]) == []
    starts, ends = cal.partition_window_arrays(days, "1w")
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [cal.partition_window_ms(d, "1w") for d in days]


def test_session_keys_are_iso_dates_and_refuse_a_non_session() -> None:
    days = XNYS.sessions(date(2024, 11, 25), date(2024, 12, 2))
    assert XNYS.session_keys(days) == [d.isoformat() for d in days]
    with pytest.raises(ValueError, match="2024-11-28 is not a XNYS session"):
        XNYS.session_keys([date(2024, 11, 27), date(2024, 11, 28)])  # Thanksgiving
