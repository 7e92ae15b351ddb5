"""Weekly bars from daily bars: one per week (Monday to Sunday), stamped at its first session's
open and held by the partition of its last session; holiday weeks, crypto weeks, an unfinished
week, checks, freshness, and ``matches_source`` failing on damage and passing after re-deriving."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import TradingCalendar, get_calendar
from marketcov_dagster.lib.freshness import bar_end_ms, ended_by_ms, expected_end_ms
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.resample import derive_sessions, matches_source
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.verify import verify_partitions
from marketcov_dagster.lib.warehouse import Warehouse

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
CRYPTO = get_calendar("24/7")
AFTER = datetime(2025, 1, 1, tzinfo=UTC)
# Thanksgiving week 2024 (Thursday closed, Friday closes at 13:00) and the week after
THANKSGIVING = [date(2024, 11, d) for d in (25, 26, 27, 29)]
NEXT_WEEK = [date(2024, 12, d) for d in (2, 3, 4, 5, 6)]


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(f"sqlite:///{tmp_path / 'wh.sqlite'}")


def _daily(wh: Warehouse, cal: TradingCalendar, symbol: str, days: list[date]) -> pd.DataFrame:
    vendor = SyntheticVendor(lambda _s: cal)
    ingest_sessions(
        symbol=symbol, interval="1d", calendar=cal, sessions=days, vendors=[vendor], warehouse=wh, run_id="d"
    )
    return wh.read_bars(symbol, "1d", cal.partition_window_ms(days[0])[0], cal.partition_window_ms(days[-1])[1])


def _week_of(daily: pd.DataFrame) -> dict[str, float]:
    return {
        "open": float(daily["open"].iloc[0]),
        "high": float(daily["high"].max()),
        "low": float(daily["low"].min()),
        "close": float(daily["close"].iloc[-1]),
        "volume": float(daily["volume"].sum()),
    }


def test_the_calendar_gives_each_week_to_its_last_session() -> None:
    assert XNYS.week_sessions(date(2024, 11, 27)) == THANKSGIVING
    last = XNYS.bounds(date(2024, 11, 29))
    assert last.week_open_ms == XNYS.bounds(date(2024, 11, 25)).open_ms
    assert last.expected_bars("1w") == 1 and last.bar_ends("1w").tolist() == [last.close_ms]  # the 13:00 close
    assert [XNYS.bounds(d).expected_bars("1w") for d in THANKSGIVING[:3]] == [0, 0, 0]
    # Martin Luther King Day: the week opens on Tuesday
    assert XNYS.bounds(date(2025, 1, 24)).week_open_ms == XNYS.bounds(date(2025, 1, 21)).open_ms
    # windows: the last session owns the whole week, the others nothing
    w = XNYS.partition_windows_ms(THANKSGIVING, "1w")
    monday0 = XNYS.partition_window_ms(THANKSGIVING[0])[0]
    assert w[:3] == [(monday0, monday0)] * 3 and w[3] == (monday0, XNYS.partition_window_ms(THANKSGIVING[3])[1])
    assert XNYS.partition_window_ms(THANKSGIVING[3], "1w") == w[3]
    # crypto: seven sessions from Monday 00:00 UTC
    sunday = CRYPTO.bounds(date(2024, 6, 9))
    assert len(CRYPTO.week_sessions(date(2024, 6, 5))) == 7
    assert pd.Timestamp(sunday.week_open_ms or 0, unit="ms", tz="UTC") == pd.Timestamp("2024-06-03", tz="UTC")


def test_weekly_bars_aggregate_the_weeks_daily_bars_exactly(wh: Warehouse) -> None:
    days = THANKSGIVING + NEXT_WEEK
    daily = _daily(wh, XNYS, "AAPL", days)
    res = derive_sessions(symbol="AAPL", interval="1w", calendar=XNYS, sessions=days, warehouse=wh, run_id="w")
    by_day = {r.session: r for r in res}
    assert [(by_day[d].rows, by_day[d].expected_rows) for d in days] == [(0, 0)] * 3 + [(1, 1)] + [(0, 0)] * 4 + [
        (1, 1)
    ]
    assert by_day[date(2024, 11, 29)].fetched_rows == 4 and by_day[date(2024, 12, 6)].fetched_rows == 5
    weeks = wh.read_bars("AAPL", "1w", -(2**62), 2**62)
    assert weeks["ts"].tolist() == [XNYS.bounds(THANKSGIVING[0]).open_ms, XNYS.bounds(NEXT_WEEK[0]).open_ms]
    for i, week in enumerate((THANKSGIVING, NEXT_WEEK)):
        want = _week_of(daily[daily["ts"].isin([XNYS.bounds(d).open_ms for d in week])])
        for col, value in want.items():
            assert float(weeks[col].iloc[i]) == value, (week[0], col)
    # the three checks every bar asset has pass on every session, the empty ones included
    checks = verify_partitions(
        warehouse=wh, calendar=XNYS, symbol="AAPL", interval="1w", sessions=days, min_completeness=1.0
    )
    assert sorted(checks) == [d.isoformat() for d in days]
    assert all(o.passed for outcomes in checks.values() for o in outcomes), checks
    # idempotent: deriving again leaves the same two bars
    derive_sessions(symbol="AAPL", interval="1w", calendar=XNYS, sessions=days, warehouse=wh, run_id="w2")
    assert wh.read_bars("AAPL", "1w", -(2**62), 2**62).equals(weeks)


def test_matches_source_fails_on_a_damaged_day_until_it_is_healed_and_its_week_rederived(wh: Warehouse) -> None:
    days = THANKSGIVING + NEXT_WEEK
    _daily(wh, XNYS, "AAPL", days)
    derive_sessions(symbol="AAPL", interval="1w", calendar=XNYS, sessions=days, warehouse=wh, run_id="w")
    assert all(o.passed for o in matches_source(wh, XNYS, "AAPL", "1w", days).values())
    wh.execute(  # Tuesday of Thanksgiving week: a higher high and more volume
        "UPDATE bars SET high = high + 50, volume = volume + 7 WHERE symbol='AAPL' AND interval='1d' AND ts = :t",
        {"t": XNYS.bounds(THANKSGIVING[1]).open_ms},
    )
    found = matches_source(wh, XNYS, "AAPL", "1w", days)
    assert not found["2024-11-29"].passed and found["2024-11-29"].metadata["different"] == 1
    assert all(found[d.isoformat()].passed for d in days if d != date(2024, 11, 29))
    # re-deriving the week from the damaged day copies the damage, and the check stays red
    last = [THANKSGIVING[-1]]
    derive_sessions(symbol="AAPL", interval="1w", calendar=XNYS, sessions=last, warehouse=wh, run_id="w2")
    copied = matches_source(wh, XNYS, "AAPL", "1w", days)["2024-11-29"]
    assert not copied.passed and "no longer match their checksum" in copied.description
    # the day re-fetched, re-deriving the week's last session repairs it (what automation requests)
    _daily(wh, XNYS, "AAPL", [THANKSGIVING[1]])
    derive_sessions(symbol="AAPL", interval="1w", calendar=XNYS, sessions=last, warehouse=wh, run_id="w3")
    assert matches_source(wh, XNYS, "AAPL", "1w", days)["2024-11-29"].passed


def test_an_unfinished_week_has_no_bar_yet_and_freshness_follows_whole_weeks(wh: Warehouse) -> None:
    days = NEXT_WEEK[:3]
    _daily(wh, XNYS, "AAPL", days)
    wednesday_night = datetime(2024, 12, 5, 2, 0, tzinfo=UTC)  # Wednesday 21:00 New York
    res = derive_sessions(
        symbol="AAPL", interval="1w", calendar=XNYS, sessions=days, warehouse=wh, run_id="w", now=wednesday_night
    )
    assert [r.rows for r in res] == [0, 0, 0] and wh.count_bars(interval="1w") == 0
    # the newest week that has ended is Thanksgiving's: due at its 13:00 close, stamped at its Monday open
    friday = XNYS.bounds(date(2024, 11, 29))
    assert expected_end_ms(XNYS, "1w", wednesday_night, 60) == friday.close_ms
    assert ended_by_ms(XNYS, "1w", wednesday_night) == friday.week_open_ms
    assert bar_end_ms(XNYS, "1w", friday.week_open_ms or 0) == friday.close_ms
    crypto_sunday = CRYPTO.bounds(date(2024, 6, 9))
    assert bar_end_ms(CRYPTO, "1w", crypto_sunday.week_open_ms or 0) == crypto_sunday.close_ms
    assert np.int64(crypto_sunday.close_ms - (crypto_sunday.week_open_ms or 0)) == 7 * 86_400_000


def test_a_crypto_week_runs_monday_to_sunday(wh: Warehouse) -> None:
    days = [date(2024, 6, d) for d in range(3, 10)]
    daily = _daily(wh, CRYPTO, "BTCUSDT", days)
    res = derive_sessions(symbol="BTCUSDT", interval="1w", calendar=CRYPTO, sessions=days, warehouse=wh, run_id="w")
    assert [r.rows for r in res] == [0] * 6 + [1]
    week = wh.read_bars("BTCUSDT", "1w", -(2**62), 2**62)
    assert len(week) == 1 and float(week["volume"].iloc[0]) == float(daily["volume"].sum())
    assert all(o.passed for o in matches_source(wh, CRYPTO, "BTCUSDT", "1w", days).values())


def test_a_week_is_derived_only_once_its_sessions_inside_the_window_are_stored(wh: Warehouse) -> None:
    from marketcov_dagster.lib.resample import SourceNotMaterializedError

    _daily(wh, XNYS, "AAPL", NEXT_WEEK[2:])  # Wednesday to Friday only
    friday = [NEXT_WEEK[-1]]
    with pytest.raises(SourceNotMaterializedError, match=r"2 session\(s\) \(2024-12-02, 2024-12-03\).*ohlcv/1d/AAPL"):
        derive_sessions(symbol="AAPL", interval="1w", calendar=XNYS, sessions=friday, warehouse=wh, run_id="w")
    assert wh.count_bars(interval="1w") == 0
    # a window starting on Wednesday: the week's bar is built from the sessions the window holds
    res = derive_sessions(
        symbol="AAPL",
        interval="1w",
        calendar=XNYS,
        sessions=friday,
        warehouse=wh,
        run_id="w",
        window_first=NEXT_WEEK[2],
    )
    assert res[0].rows == 1 and res[0].fetched_rows == 3


@pytest.mark.parametrize(
    ("now", "first"),
    [
        (datetime(2024, 12, 5, 2, 0, tzinfo=UTC), date(2024, 11, 25)),  # Wednesday night: Thanksgiving week
        (datetime(2024, 12, 7, 12, 0, tzinfo=UTC), date(2024, 12, 2)),  # Saturday: the week just ended
    ],
)
def test_a_catch_up_with_no_dates_reaches_back_to_the_newest_ended_week(now: datetime, first: date) -> None:
    from marketcov_dagster.lib.windows import backfill_sessions

    days = backfill_sessions(XNYS, 1095, now, whole_week=True)
    assert days[0] == first and days[-1] == XNYS.last_closed_session(now)
    assert len(backfill_sessions(XNYS, 1095, now)) == 3  # minute bars keep the short default
