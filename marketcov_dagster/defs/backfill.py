"""Range backfills launched from Python (the ``marketcov backfill`` command).

One run per (calendar, interval) group covers every selected asset of the group over the whole
session range, exactly as a single-run backfill from the UI would: the range travels in the
``dagster/asset_partition_range_*`` run tags and each asset fetches it with one vendor request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg

from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, group_job_name
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.windows import backfill_sessions


@dataclass(frozen=True)
class GroupRun:
    job_name: str
    run_id: str
    success: bool
    assets: int
    first_session: date
    last_session: date
    sessions: int
    error: str | None


@dataclass(frozen=True)
class GroupPlan:
    job_name: str
    specs: list[AssetSpecification]
    sessions: list[date]


def plan_backfill(
    specs: Sequence[AssetSpecification],
    start: date | None,
    end: date | None,
    now: datetime,
) -> list[GroupPlan]:
    """Resolve the session range per group; raises ``BadRangeError`` before anything runs."""
    groups: dict[tuple[str, str], list[AssetSpecification]] = defaultdict(list)
    for s in specs:
        groups[s.group].append(s)
    plans = []
    for (calendar, interval), members in sorted(groups.items()):
        sessions = backfill_sessions(get_calendar(calendar), members[0].window_days, now, start, end)
        plans.append(GroupPlan(group_job_name(calendar, interval), members, sessions))
    return plans


def run_backfill(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plans: Sequence[GroupPlan],
) -> list[GroupRun]:
    out = []
    for plan in plans:
        if not plan.sessions:
            continue
        job = defs.resolve_job_def(plan.job_name)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(list(s.key_path)) for s in plan.specs],
            tags={
                RANGE_START_TAG: plan.sessions[0].isoformat(),
                RANGE_END_TAG: plan.sessions[-1].isoformat(),
                "marketcov/launched_by": "cli",
            },
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
        error = None
        if not result.success:
            failures = [e.message for e in result.all_events if e.is_failure and e.message]
            error = failures[0] if failures else "run failed"
        out.append(
            GroupRun(
                job_name=plan.job_name,
                run_id=result.run_id,
                success=result.success,
                assets=len(plan.specs),
                first_session=plan.sessions[0],
                last_session=plan.sessions[-1],
                sessions=len(plan.sessions),
                error=error,
            )
        )
    return out
