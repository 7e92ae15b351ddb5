"""One partitions definition per (calendar, interval): exchange sessions as daily partitions."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.windows import window_start

WEEKENDS_CRON = "0 0 * * 6,0"
# the tags a single run over a partition range carries (as a single-run backfill from the UI does)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _name_part(calendar: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in calendar).lower()


def group_job_name(calendar: str, interval: str) -> str:
    return f"ohlcv_{_name_part(calendar)}_{interval}_job"


def verify_job_name(calendar: str, interval: str) -> str:
    return f"ohlcv_{_name_part(calendar)}_{interval}_verify_job"


def sessions_partitions(calendar_name: str, window_days: int, now: datetime) -> dg.DailyPartitionsDefinition:
    """Daily partitions whose keys are exactly the calendar's sessions, from the window start.

    ``end_offset=1`` makes today's session a partition while it trades. Dagster counts the
    offset in non-excluded days, so on a weekend or holiday the next session is listed too;
    the asset refuses to materialize a session that has not opened yet.
    """
    cal = get_calendar(calendar_name)
    start = window_start(cal, window_days, now)
    if cal.always_open:
        return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)
    weekends_closed = not cal.trades_on_weekends()
    exclusions: list[str | datetime] = [WEEKENDS_CRON] if weekends_closed else []
    days = cal.non_sessions(start, cal.last_session, weekdays_only=weekends_closed)
    exclusions.extend(datetime(d.year, d.month, d.day, tzinfo=cal.tz) for d in days)
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(),
        timezone=str(cal.tz),
        end_offset=1,
        exclusions=exclusions,
    )
