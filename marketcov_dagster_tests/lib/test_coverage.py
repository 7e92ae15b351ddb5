"""Coverage segments, missing and partial sessions on crafted histories."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.coverage import asset_coverage, report, to_csv, to_table
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.windows import backfill_sessions, expected_sessions

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
# 2024-06-17 .. 2024-06-28: ten sessions; Juneteenth (06-19) is a holiday, so 06-20 follows 06-18
NOW = datetime(2024, 6, 28, 21, 30, tzinfo=UTC)
SPEC = AssetSpecification("AAPL", "1d", "us_equity", "XNYS", ("synthetic",), 13, 1.0)
MINUTE_SPEC = AssetSpecification("AAPL", "1m", "us_equity", "XNYS", ("synthetic",), 13, 0.98)


def sessions() -> list[str]:
    return [d.isoformat() for d in expected_sessions(XNYS, SPEC.window_days, NOW)]


def test_window_sessions_skip_holiday() -> None:
    s = sessions()
    assert s[0] == "2024-06-17" and s[-1] == "2024-06-28" and len(s) == 9
    assert "2024-06-19" not in s


def test_two_runs_give_two_segments() -> None:
    s = sessions()  # 9 sessions
    present = set(s[0:3]) | set(s[6:9])
    cov = asset_coverage(SPEC, XNYS, present, {k: 1 for k in present}, NOW)
    assert [(g.start, g.end, g.sessions) for g in cov.segments] == [(s[0], s[2], 3), (s[6], s[8], 3)]
    assert cov.missing == s[3:6]
    assert cov.covered_sessions == 6 and cov.expected_sessions == 9
    assert cov.coverage_pct == round(100 * 6 / 9, 2)
    assert (cov.first_session, cov.last_session, cov.rows) == (s[0], s[8], 6)


def test_weekend_and_holiday_inside_a_run_are_not_gaps() -> None:
    s = sessions()
    cov = asset_coverage(SPEC, XNYS, set(s), {k: 1 for k in s}, NOW)
    assert len(cov.segments) == 1 and cov.segments[0].sessions == 9
    assert cov.missing == [] and cov.coverage_pct == 100.0


def test_partial_session_breaks_segment_and_is_listed() -> None:
    s = sessions()
    rows = {k: 390 for k in s}
    rows["2024-06-21"] = 300  # below 98 % of 390
    rows["2024-06-24"] = 385  # minutes without trades: within the threshold
    cov = asset_coverage(MINUTE_SPEC, XNYS, set(s), rows, NOW)
    assert cov.partial == ["2024-06-21"]
    assert len(cov.segments) == 2
    assert cov.rows == sum(rows.values())


def test_report_shapes() -> None:
    s = sessions()
    cov = asset_coverage(SPEC, XNYS, set(s[:4]), {k: 1 for k in s[:4]}, NOW)
    doc = report([cov], NOW)
    asset = doc["assets"][0]  # type: ignore[index]
    assert set(asset) >= {
        "asset_key",
        "symbol",
        "interval",
        "calendar",
        "expected_sessions",
        "covered_sessions",
        "coverage_pct",
        "first_session",
        "last_session",
        "rows",
        "segments",
        "missing",
        "partial",
    }
    assert asset["segments"][0] == {"start": s[0], "end": s[3], "sessions": 4, "rows": 4}
    assert doc["summary"]["missing_sessions"] == 5  # type: ignore[index]
    assert "ohlcv/1d/AAPL" in to_table([cov]) and "44.44" in to_table([cov])
    assert to_csv([cov]).splitlines()[1].startswith("ohlcv/1d/AAPL,AAPL,1d,XNYS,9,4,44.44,1,")


def test_backfill_defaults_and_clipping() -> None:
    assert backfill_sessions(XNYS, 13, NOW) == [date(2024, 6, 26), date(2024, 6, 27), date(2024, 6, 28)]
    # a range reaching past the window and into the future is clipped to what exists
    got = backfill_sessions(XNYS, 13, NOW, date(2024, 1, 1), date(2024, 12, 31))
    assert got[0] == date(2024, 6, 17) and got[-1] == date(2024, 6, 28)


def test_a_catch_up_with_no_dates_includes_the_minute_session_trading_now() -> None:
    during = datetime(2024, 7, 1, 15, 0, tzinfo=UTC)  # Monday 11:00 New York, the session is open
    closed = [date(2024, 6, 26), date(2024, 6, 27), date(2024, 6, 28)]
    assert backfill_sessions(XNYS, 13, during) == closed
    assert backfill_sessions(XNYS, 13, during, include_open=True) == [*closed, date(2024, 7, 1)]
    after_close = datetime(2024, 7, 1, 21, 0, tzinfo=UTC)
    assert backfill_sessions(XNYS, 13, after_close, include_open=True) == [*closed[1:], date(2024, 7, 1)]
    crypto = get_calendar("24/7")
    got = backfill_sessions(crypto, 13, during, include_open=True)
    assert got[-1] == date(2024, 7, 1) and len(got) == 4


def test_table_csv_and_json_agree_on_what_each_column_means() -> None:
    s = sessions()
    rows = {k: 1 for k in s[:2] + s[4:6]}
    cov = asset_coverage(SPEC, XNYS, set(rows), rows, NOW)
    assert len(cov.segments) == 2 and len(cov.missing) == 5
    asset = report([cov], NOW)["assets"][0]  # type: ignore[index]
    header = to_table([cov]).splitlines()[0].split()
    summary = dict(zip(*[line.split(",") for line in to_csv([cov]).splitlines()], strict=True))
    for name, count in (("segment_count", 2), ("missing_count", 5), ("partial_count", 0)):
        assert name in header and int(summary[name]) == asset[name] == count, name
        plural = name.removesuffix("_count") + ("s" if name == "segment_count" else "")
        assert len(asset[plural]) == count  # the JSON's list is what the count counts
    # the long forms: one row per segment, one per missing or partial session
    segments = to_csv([cov], "segments").splitlines()
    assert segments[0] == "asset_key,symbol,interval,start,end,sessions,rows" and len(segments) == 1 + 2
    assert segments[1] == f"ohlcv/1d/AAPL,AAPL,1d,{s[0]},{s[1]},2,2"
    missing = to_csv([cov], "sessions").splitlines()
    assert missing[0] == "asset_key,symbol,interval,session,state" and len(missing) == 1 + 5
    assert {line.rsplit(",", 2)[1] for line in missing[1:]} == set(cov.missing)
    with pytest.raises(ValueError, match="unknown CSV view"):
        to_csv([cov], "wide")
