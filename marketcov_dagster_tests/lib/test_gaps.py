"""The range runs ``backfill --missing`` makes of the holes: consecutive in calendar terms."""

from __future__ import annotations

from datetime import date

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.gaps import consecutive_runs, fill_runs

XNYS = get_calendar("XNYS")


def test_weekends_and_holidays_do_not_break_a_run() -> None:
    # Wed 2025-11-26, (Thanksgiving closed), Fri 2025-11-28, (weekend), Mon 2025-12-01: one run
    days = [date(2025, 11, 26), date(2025, 11, 28), date(2025, 12, 1)]
    assert consecutive_runs(XNYS, days) == [(date(2025, 11, 26), date(2025, 12, 1))]
    # a session left out in the middle (Tue 2025-11-25) splits the runs
    assert consecutive_runs(XNYS, [date(2025, 11, 24), date(2025, 11, 26)]) == [
        (date(2025, 11, 24), date(2025, 11, 24)),
        (date(2025, 11, 26), date(2025, 11, 26)),
    ]
    assert consecutive_runs(XNYS, [date(2025, 11, 27)]) == []  # not a session: nothing to fetch
    assert consecutive_runs(XNYS, []) == []


def test_assets_with_the_same_holes_share_a_run() -> None:
    week = XNYS.sessions(date(2025, 12, 1), date(2025, 12, 5))
    runs = fill_runs(XNYS, {"AAPL": week, "MSFT": week, "SPY": week[3:]})
    assert runs == [(["AAPL", "MSFT"], week[0], week[-1]), (["SPY"], week[3], week[-1])]
    assert fill_runs(XNYS, {}) == []
