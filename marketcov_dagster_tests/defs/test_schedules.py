"""Schedules evaluated with Dagster's own schedule context on a real instance, at fixed instants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster_tests.conftest import small_universe

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

NOW = datetime(2025, 3, 14, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(small_universe(), now=NOW)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as inst:
        yield inst


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, when: str, tz: str) -> object:
    schedule = defs.get_repository_def().get_schedule_def(name)
    ctx = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=pd.Timestamp(when, tz=tz).to_pydatetime(),
        repository_def=defs.get_repository_def(),
    )
    data = schedule.evaluate_tick(ctx)
    if data.skip_message:
        return "skip"
    (req,) = data.run_requests or []
    assert req.job_name in (None, schedule.job_name)
    if req.partition_key:
        return req.partition_key
    return (req.tags[RANGE_START_TAG], req.tags[RANGE_END_TAG])


def test_crons_follow_each_calendar(defs: dg.Definitions) -> None:
    crons = {s.name: (s.cron_schedule, s.execution_timezone) for s in defs.schedules}  # type: ignore[union-attr]
    assert crons == {
        "ohlcv_xnys_1d_schedule": ("30 16 * * 1,2,3,4,5", "America/New_York"),
        "ohlcv_xnys_1m_schedule": ("5-59/15 9-16 * * 1,2,3,4,5", "America/New_York"),
        "ohlcv_24_7_1d_schedule": ("30 0 * * *", "UTC"),
        "ohlcv_24_7_1m_schedule": ("5-59/15 * * * *", "UTC"),
        "retention_schedule": ("15 2 * * *", "UTC"),
        "coverage_report_schedule": ("7 * * * *", "UTC"),
        "reconcile_schedule": ("0 6 * * *", "UTC"),  # opt-in: stopped until started
        # the ledger before the daily bars: 15 minutes after the close, the bars 30
        "corporate_actions_schedule": ("15 16 * * 1,2,3,4,5", "America/New_York"),
    }
    stopped = {s.name for s in defs.schedules if s.default_status == dg.DefaultScheduleStatus.STOPPED}  # type: ignore[union-attr]
    assert stopped == {"reconcile_schedule"}
    # one run per group per tick: each schedule targets its group's job, every symbol inside it
    assert {s.job_name for s in defs.schedules} == {  # type: ignore[union-attr]
        "ohlcv_xnys_1d_job",
        "ohlcv_xnys_1m_job",
        "ohlcv_24_7_1d_job",
        "ohlcv_24_7_1m_job",
        "retention_job",
        "coverage_report_job",
        "reconcile_job",
        "corporate_actions_job",
    }


@pytest.mark.parametrize(
    ("name", "when", "tz", "expected"),
    [
        # daily bars after each close, in exchange time; Thanksgiving ticks without a run
        ("ohlcv_xnys_1d_schedule", "2024-11-27 16:30", "America/New_York", "2024-11-27"),
        ("ohlcv_xnys_1d_schedule", "2024-11-28 16:30", "America/New_York", "skip"),
        ("ohlcv_xnys_1d_schedule", "2024-11-29 16:30", "America/New_York", "2024-11-29"),  # early close
        ("ohlcv_xnys_1d_schedule", "2025-03-10 16:30", "America/New_York", "2025-03-10"),  # after DST
        # crypto daily bars just after 00:00 UTC, for the day that closed, weekends included
        ("ohlcv_24_7_1d_schedule", "2025-02-02 00:30", "UTC", "2025-02-01"),
        # intraday: today's partition during the session and once just after the close
        ("ohlcv_xnys_1m_schedule", "2025-02-03 09:35", "America/New_York", "2025-02-03"),
        ("ohlcv_xnys_1m_schedule", "2025-02-03 16:05", "America/New_York", "2025-02-03"),
        ("ohlcv_xnys_1m_schedule", "2025-02-03 16:20", "America/New_York", "skip"),
        ("ohlcv_xnys_1m_schedule", "2025-02-03 09:20", "America/New_York", "skip"),
        ("ohlcv_xnys_1m_schedule", "2024-11-29 13:05", "America/New_York", "2024-11-29"),  # early close, final
        ("ohlcv_xnys_1m_schedule", "2024-11-29 13:20", "America/New_York", "skip"),
        ("ohlcv_xnys_1m_schedule", "2024-11-28 11:05", "America/New_York", "skip"),  # holiday
        ("ohlcv_xnys_1m_schedule", "2025-03-10 09:35", "America/New_York", "2025-03-10"),  # DST Monday
        # crypto never sleeps; the first tick of a day settles the day before in the same run
        ("ohlcv_24_7_1m_schedule", "2025-02-01 12:05", "UTC", "2025-02-01"),
        ("ohlcv_24_7_1m_schedule", "2025-02-01 00:05", "UTC", ("2025-01-31", "2025-02-01")),
    ],
)
def test_ticks_fetch_the_right_sessions(
    defs: dg.Definitions, instance: dg.DagsterInstance, name: str, when: str, tz: str, expected: object
) -> None:
    assert evaluate(defs, instance, name, when, tz) == expected
