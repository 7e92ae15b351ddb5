"""Lag from data at fixed instants: nights, weekends, holidays, early closes, DST, crypto weekends."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.freshness import expected_end_ms, freshness
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval
from marketcov_dagster.lib.universe import AssetSpecification

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

NY = ZoneInfo("America/New_York")
UTC_ = ZoneInfo("UTC")


def spec(interval: Interval, calendar: str = "XNYS", delay: float = 15.0) -> AssetSpecification:
    symbol = "BTCUSDT" if calendar == "24/7" else "AAPL"
    return AssetSpecification(symbol, interval, "x", calendar, ("synthetic",), 90, 1.0, 60.0, delay)


def ms(text: str, tz: ZoneInfo = NY) -> int:
    return int(pd.Timestamp(text, tz=tz).timestamp() * 1000)


def at(text: str, tz: ZoneInfo = NY) -> datetime:
    return pd.Timestamp(text, tz=tz).to_pydatetime()


def last_minute_bar(close: str, tz: ZoneInfo = NY) -> int:
    """Open time of the bar that ends at ``close``."""
    return ms(close, tz) - MINUTE_MS


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Friday after the close: the close is expected, nothing more
        ("2025-01-31 18:00", "2025-01-31 16:00"),
        # Saturday and Sunday: still Friday's close
        ("2025-02-01 12:00", "2025-01-31 16:00"),
        ("2025-02-02 23:00", "2025-01-31 16:00"),
        # Monday before the open, and in the first 15 minutes (vendor delay): still Friday
        ("2025-02-03 09:40", "2025-01-31 16:00"),
        # Monday 10:00: now - 15 min, floored to the minute
        ("2025-02-03 10:00:30", "2025-02-03 09:45"),
        # Thanksgiving (holiday): Wednesday's close; Black Friday morning and after its 13:00 early close
        ("2024-11-28 12:00", "2024-11-27 16:00"),
        ("2024-11-29 11:00", "2024-11-29 10:45"),
        ("2024-11-29 15:00", "2024-11-29 13:00"),
        # DST: Monday after the spring change opens at 13:30 UTC, not 14:30
        ("2025-03-10 10:00", "2025-03-10 09:45"),
    ],
)
def test_expected_end_of_minute_bars_follows_the_calendar(now: str, expected: str) -> None:
    assert expected_end_ms(get_calendar("XNYS"), "1m", at(now), 15.0) == ms(expected)


def test_dst_week_lag_is_measured_in_real_minutes() -> None:
    # 2025-03-10 10:00 EDT = 14:00 UTC; bars up to 09:40 EDT are stored -> lag 5 minutes, not 65
    f = freshness(spec("1m"), ms("2025-03-10 09:39"), at("2025-03-10 10:00"))
    assert f.lag_minutes == 5.0 and not f.stale
    assert f.expected_end == "2025-03-10T13:45:00+00:00"


def test_no_false_alarm_at_night_weekend_holiday_or_after_an_early_close() -> None:
    friday_close = last_minute_bar("2025-01-31 16:00")
    for now in ("2025-01-31 20:00", "2025-02-01 12:00", "2025-02-03 09:44"):
        f = freshness(spec("1m"), friday_close, at(now))
        assert f.lag_minutes == 0.0 and not f.stale, now
    wednesday_close = last_minute_bar("2024-11-27 16:00")
    assert not freshness(spec("1m"), wednesday_close, at("2024-11-28 15:00")).stale
    early_close = last_minute_bar("2024-11-29 13:00")
    f = freshness(spec("1m"), early_close, at("2024-11-29 15:59"))
    assert f.lag_minutes == 0.0 and not f.stale


def test_stale_when_the_data_trails_by_more_than_the_threshold() -> None:
    # Black Friday morning of an early close: stored up to 10:00, now 11:30 -> expected 11:15, lag 75
    f = freshness(spec("1m"), ms("2024-11-29 09:59"), at("2024-11-29 11:30"))
    assert f.lag_minutes == 75.0 and f.stale
    # Friday after close with bars only to 14:30: stale all weekend, by the same amount
    for now in ("2025-01-31 18:00", "2025-02-01 12:00"):
        f = freshness(spec("1m"), ms("2025-01-31 14:29"), at(now))
        assert f.lag_minutes == 90.0 and f.stale


def test_daily_bars_are_expected_after_close_plus_delay() -> None:
    s = spec("1d", delay=60)
    thursday = ms("2025-01-30 09:30")  # a daily bar is stamped at its session open
    friday = ms("2025-01-31 09:30")
    assert not freshness(s, thursday, at("2025-01-31 16:59")).stale  # within the delay after close
    late = freshness(s, thursday, at("2025-01-31 17:01"))
    assert late.stale and late.lag_minutes == 24 * 60.0
    assert not freshness(s, friday, at("2025-02-02 12:00")).stale  # weekend
    # Thanksgiving: Wednesday's bar is the newest expected on Thursday, and Friday's early close
    # (13:00) makes its bar due at 14:00
    wednesday = ms("2024-11-27 09:30")
    assert not freshness(s, wednesday, at("2024-11-28 20:00")).stale
    assert freshness(s, wednesday, at("2024-11-29 14:01")).stale


def test_crypto_never_sleeps() -> None:
    m = spec("1m", "24/7", delay=5)
    # Saturday noon UTC: bars up to 11:55 are expected
    assert freshness(m, ms("2025-02-01 11:54", UTC_), at("2025-02-01 12:00", UTC_)).lag_minutes == 0.0
    f = freshness(m, ms("2025-02-01 09:59", UTC_), at("2025-02-01 12:00", UTC_))
    assert f.stale and f.lag_minutes == 115.0
    d = spec("1d", "24/7", delay=30)
    thursday, friday = ms("2025-01-30 00:00", UTC_), ms("2025-01-31 00:00", UTC_)
    assert not freshness(d, thursday, at("2025-02-01 00:29", UTC_)).stale  # Friday's bar not due yet
    assert freshness(d, thursday, at("2025-02-01 00:31", UTC_)).stale
    # Saturday is a session too: its bar is due on Sunday
    assert not freshness(d, friday, at("2025-02-02 00:29", UTC_)).stale
    assert freshness(d, friday, at("2025-02-02 00:31", UTC_)).stale


def test_no_bars_at_all_is_no_data_yet_not_stale() -> None:
    f = freshness(spec("1m"), None, at("2025-02-03 12:00"))
    assert not f.stale and f.no_data and f.lag_minutes is None and f.describe_lag() == "no data yet"


def test_assets_never_written_open_no_incident_and_send_no_mail(sqlite_warehouse) -> None:  # type: ignore[no-untyped-def]
    from marketcov_dagster.lib import alerts

    now = at("2025-02-03 17:00")
    written, never = spec("1m"), spec("1d")
    stale_bar = int(at("2025-01-31 14:30").timestamp() * 1000)
    results = [freshness(written, stale_bar, now), freshness(never, None, now)]
    changes = alerts.update_incidents(sqlite_warehouse, results, {}, alerts.AlertStyle(), now)
    assert len(changes.opened) == 1
    assert [i["asset_key"] for i in alerts.list_incidents(sqlite_warehouse)] == [written.key_str]
    assert alerts.pending_count(sqlite_warehouse) == 1


def test_ui_freshness_windows_cover_every_closure_of_the_calendar() -> None:
    from datetime import date, timedelta

    from marketcov_dagster.lib.freshness import longest_pause, ui_freshness_windows
    from marketcov_dagster.lib.universe import IntervalSettings

    xnys, crypto = get_calendar("XNYS"), get_calendar("24/7")
    today = date(2025, 3, 1)
    # Easter 2025: Thursday 17 April 16:00 close -> Monday 21 April 09:30 open
    assert longest_pause(xnys, today, "open") >= timedelta(days=3, hours=17, minutes=30)
    assert longest_pause(crypto, today, "open") == timedelta(0)
    minute = IntervalSettings(window_days=90, vendor_delay_minutes=15, schedule_delay_minutes=5, expire=True)
    fail, warn = ui_freshness_windows(xnys, "1m", minute, today)
    assert warn is None and fail == longest_pause(xnys, today, "open") + timedelta(minutes=15 + 5 + 60)
    fail, warn = ui_freshness_windows(crypto, "1m", minute, today)
    assert (fail, warn) == (timedelta(minutes=80), timedelta(minutes=50))
    daily = IntervalSettings(window_days=900, vendor_delay_minutes=60, schedule_delay_minutes=30, expire=False)
    fail, _ = ui_freshness_windows(xnys, "1d", daily, today)
    assert fail >= timedelta(days=4, hours=1, minutes=30)  # Thursday close -> Monday close, + delay + threshold


@pytest.mark.parametrize(
    ("minutes", "text"), [(0, "0 min"), (59.9, "59 min"), (60, "1h 00m"), (104, "1h 44m"), (4812, "3d 8h")]
)
def test_lag_reads_in_human_units(minutes: float, text: str) -> None:
    from marketcov_dagster.lib.freshness import human_minutes

    assert human_minutes(minutes) == text


def test_a_bar_dated_in_the_future_does_not_make_an_asset_fresh(sqlite_warehouse) -> None:  # type: ignore[no-untyped-def]
    from marketcov_dagster.lib.freshness import ended_cutoffs, freshness_all

    now = at("2025-02-03 12:00")  # a Monday session, 2.5 h in
    minute, daily = spec("1m"), spec("1d")
    for s, ts in [
        (minute, ms("2025-01-31 15:59")),  # Friday's last minute: the newest real bar
        (minute, ms("2025-02-04 10:00")),  # tomorrow: a bar that cannot exist yet
        (daily, ms("2025-01-31 09:30")),  # Friday's daily bar
        (daily, ms("2025-02-03 09:30")),  # today's daily bar, still forming
    ]:
        sqlite_warehouse.execute(
            "INSERT INTO bars VALUES (:s, :i, :ts, 1, 1, 1, 1, 1)", {"s": s.symbol, "i": s.interval, "ts": ts}
        )
    pairs = [(s.symbol, s.interval) for s in (minute, daily)]
    latest = sqlite_warehouse.latest_bar_ts(pairs, ended_cutoffs([minute, daily], now))
    assert latest == {("AAPL", "1m"): ms("2025-01-31 15:59"), ("AAPL", "1d"): ms("2025-01-31 09:30")}
    f_minute, f_daily = freshness_all([minute, daily], latest, now)
    assert f_minute.stale and (f_minute.lag_minutes or 0) > 60  # not "lag 0, ok"
    assert not f_daily.stale  # Friday's close is the newest a daily bar can have ended


def test_status_reports_bars_dated_after_now(sqlite_warehouse) -> None:  # type: ignore[no-untyped-def]
    from marketcov_dagster.lib.status import status_report, to_text

    now = at("2025-02-03 12:00")
    minute = spec("1m")
    for ts in (ms("2025-02-03 11:00"), ms("2025-02-04 10:00"), ms("2026-01-05 10:00")):
        sqlite_warehouse.execute("INSERT INTO bars VALUES ('AAPL', '1m', :ts, 1, 1, 1, 1, 1)", {"ts": ts})
    report = status_report(sqlite_warehouse, [minute], now)
    (asset,) = report["assets"]
    assert asset["unended_bars"] == 2 and asset["latest_end"] == "2025-02-03T16:01:00+00:00"
    assert "2 stored bar(s) dated after now" in to_text(report)


def test_status_reports_bars_between_sessions(sqlite_warehouse) -> None:  # type: ignore[no-untyped-def]
    from marketcov_dagster.lib.status import status_report, to_text

    now = at("2025-02-03 12:00")  # a Monday
    minute, daily, crypto = spec("1m"), spec("1d"), spec("1m", "24/7")
    rows = [
        (minute, ms("2025-01-31 15:59")),  # Friday's last minute: a real bar
        (minute, ms("2025-02-01 11:00")),  # Saturday: XNYS is closed
        (minute, ms("2025-01-31 17:30")),  # Friday after the close
        (minute, ms("2025-02-03 08:00")),  # Monday before the open
        (daily, ms("2025-01-20 09:30")),  # Martin Luther King Jr. Day: no session
        (daily, ms("2025-01-31 09:30")),  # Friday's daily bar: a real one
        (crypto, ms("2025-02-01 11:00", UTC_)),  # crypto trades on Saturdays
    ]
    for s, ts in rows:
        sqlite_warehouse.execute(
            "INSERT INTO bars VALUES (:s, :i, :ts, 1, 1, 1, 1, 1)", {"s": s.symbol, "i": s.interval, "ts": ts}
        )
    report = status_report(sqlite_warehouse, [minute, daily, crypto], now)
    by_key = {a["asset_key"]: a["outside_session_bars"] for a in report["assets"]}
    assert by_key == {"ohlcv/1m/AAPL": 3, "ohlcv/1d/AAPL": 1, "ohlcv/1m/BTCUSDT": 0}
    assert "ohlcv/1m/AAPL: 3 stored bar(s) between sessions" in to_text(report)


def test_a_candle_stale_because_its_minutes_are_is_not_a_second_incident() -> None:
    from dataclasses import replace

    from marketcov_dagster.lib.freshness import freshness_all, root_causes

    now = at("2025-02-03 15:00")  # Monday, mid-session
    minute = spec("1m")
    five, hour = replace(spec("5m"), derived_from="1m"), replace(spec("1h"), derived_from="1m")
    other = replace(spec("5m"), symbol="MSFT", derived_from="1m")
    friday = ms("2025-01-31 15:55")  # every asset's newest bar is Friday's: all stale
    latest: dict[tuple[str, str], int] = {(s.symbol, s.interval): friday for s in (minute, five, hour, other)}
    results = freshness_all([minute, five, hour, other], latest, now)
    assert all(f.stale for f in results)
    kept = [f.asset_key for f in root_causes(results, [minute, five, hour, other])]
    # AAPL's candles lag because its minutes do: one incident; MSFT's 5m has no stale source here
    assert kept == ["ohlcv/1m/AAPL", "ohlcv/5m/MSFT"]
    fresh_minutes = {**latest, ("AAPL", "1m"): ms("2025-02-03 14:40")}
    results = freshness_all([minute, five, hour], fresh_minutes, now)
    assert [f.asset_key for f in root_causes(results, [minute, five, hour])] == [
        "ohlcv/1m/AAPL",
        "ohlcv/5m/AAPL",
        "ohlcv/1h/AAPL",
    ]


def test_indicators_are_measured_by_their_own_values_and_open_an_incident_only_as_the_root(sqlite_warehouse) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from marketcov_dagster.lib.freshness import freshness_now, root_causes

    now = at("2025-02-05 12:00")  # Wednesday mid-session: Tuesday's daily bar is the newest ended
    daily = spec("1d")
    ind = replace(daily, indicators=True)
    for ts in (ms("2025-01-31 09:30"), ms("2025-02-03 09:30"), ms("2025-02-04 09:30")):
        sqlite_warehouse.execute("INSERT INTO bars VALUES ('AAPL', '1d', :ts, 1, 1, 1, 1, 1)", {"ts": ts})
    # the indicators were last computed on Friday: bars fresh, indicators stale (their own incident)
    sqlite_warehouse.execute(
        "INSERT INTO indicator_values (symbol, interval, ts) VALUES ('AAPL', '1d', :ts)", {"ts": ms("2025-01-31 09:30")}
    )
    bars_f, ind_f = freshness_now(sqlite_warehouse, [daily, ind], now)
    assert (bars_f.asset_key, bars_f.stale) == ("ohlcv/1d/AAPL", False)
    assert (ind_f.asset_key, ind_f.stale) == ("indicators/1d/AAPL", True)
    assert ind_f.latest_end is not None and ind_f.latest_end.startswith("2025-01-31")
    kept = root_causes([bars_f, ind_f], [daily, ind])
    assert [f.asset_key for f in kept if f.stale] == ["indicators/1d/AAPL"]
    # a week later nothing new arrived: both lag, and only the bars are the root cause
    later = at("2025-02-12 12:00")
    results = freshness_now(sqlite_warehouse, [ind, daily], later)
    assert [f.asset_key for f in results] == ["indicators/1d/AAPL", "ohlcv/1d/AAPL"] and all(f.stale for f in results)
    assert [f.asset_key for f in root_causes(results, [ind, daily])] == ["ohlcv/1d/AAPL"]


def test_status_names_the_partitions_whose_checksum_check_fails(sqlite_warehouse) -> None:  # type: ignore[no-untyped-def]
    from marketcov_dagster.lib.calendars import get_calendar
    from marketcov_dagster.lib.ingest import ingest_sessions
    from marketcov_dagster.lib.status import status_report, to_text
    from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
    from marketcov_dagster.lib.verify import record_verdicts, verify_partitions

    xnys = get_calendar("XNYS")
    now = at("2025-02-03 12:00")
    days = xnys.sessions(date(2025, 1, 27), date(2025, 1, 31))
    kw = {"symbol": "AAPL", "interval": "1d", "calendar": xnys, "warehouse": sqlite_warehouse, "now": now}
    ingest_sessions(**kw, sessions=days, vendors=[SyntheticVendor(lambda _s: xnys)], run_id="r1")  # type: ignore[arg-type]
    assert status_report(sqlite_warehouse, [spec("1d")], now)["assets"][0]["failed_checks"] == {}
    sqlite_warehouse.execute(  # two sessions' stored bars changed behind the lineage's back
        "UPDATE bars SET volume = volume + 1 WHERE symbol = 'AAPL' AND interval = '1d' AND ts IN (:a, :b)",
        {"a": xnys.bounds(days[1]).open_ms, "b": xnys.bounds(days[3]).open_ms},
    )
    outcomes = verify_partitions(**kw, sessions=days, min_completeness=1.0)  # type: ignore[arg-type]
    record_verdicts(sqlite_warehouse, "AAPL", "1d", outcomes, "verify")
    report = status_report(sqlite_warehouse, [spec("1d")], now)
    broken = [days[1].isoformat(), days[3].isoformat()]
    assert report["assets"][0]["failed_checks"] == {"checksum_matches": broken}
    assert f"ohlcv/1d/AAPL: 2 partition(s) fail checksum_matches: {broken[0]}, {broken[1]}" in to_text(report)
