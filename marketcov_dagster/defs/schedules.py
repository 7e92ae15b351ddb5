"""Schedules: one run per (calendar, interval) group per tick, never one per symbol.

Tick times and the sessions each tick fetches come from ``lib.scheduling``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg

from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.scheduling import (
    daily_cron,
    daily_session_for_tick,
    intraday_cron,
    intraday_sessions_for_tick,
)
from marketcov_dagster.lib.universe import IntervalSettings


def _run_request(job_name: str, sessions: list[date], tick: datetime) -> dg.RunRequest:
    first, last = sessions[0].isoformat(), sessions[-1].isoformat()
    key = f"{job_name}:{first}:{tick.astimezone(UTC):%Y-%m-%dT%H:%M}"
    if first == last:
        return dg.RunRequest(run_key=key, partition_key=first)
    return dg.RunRequest(run_key=key, tags={RANGE_START_TAG: first, RANGE_END_TAG: last})


def schedule_name(job_name: str) -> str:
    return job_name.removesuffix("_job") + "_schedule"


def build_group_schedule(
    calendar_name: str, interval: str, settings: IntervalSettings, job_name: str, today: date
) -> dg.ScheduleDefinition:
    cal = get_calendar(calendar_name)
    if interval == "1d":
        cron = daily_cron(cal, settings.schedule_delay_minutes, today)
        what = (
            f"Daily bars of every {calendar_name} asset, {settings.schedule_delay_minutes} min after each session's "
            "close (exchange time); holidays tick without a run."
        )
    else:
        cron = intraday_cron(cal, settings.refresh_every_minutes, settings.schedule_delay_minutes, today)
        what = (
            f"Every {settings.refresh_every_minutes} min during {calendar_name} sessions: today's {interval} partition "
            "of every asset, fetching only bars newer than those stored; the first tick after the close fetches the "
            "settled session whole."
        )

    @dg.schedule(
        name=schedule_name(job_name),
        cron_schedule=cron.expression,
        execution_timezone=cron.timezone,
        job_name=job_name,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=what,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        tick = context.scheduled_execution_time
        if interval == "1d":
            session = daily_session_for_tick(cal, tick)
            sessions = [session] if session else []
        else:
            sessions = intraday_sessions_for_tick(cal, tick, settings.refresh_every_minutes)
        if not sessions:
            return dg.SkipReason(f"{tick.astimezone(cal.tz):%Y-%m-%d %H:%M %Z}: no {calendar_name} session to fetch")
        return _run_request(job_name, sessions, tick)

    return _schedule
