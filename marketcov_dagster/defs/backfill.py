"""Range backfills launched from Python (the ``marketcov backfill`` command).

One run per (calendar, interval) group covers every selected asset of the group over the whole
session range, exactly as a single-run backfill from the UI would: the range travels in the
``dagster/asset_partition_range_*`` run tags and each asset fetches it with one vendor request.

Dagster's own cost (about 65 ms per partition for the materialization and three check
evaluations) is Python on one core, so a large backfill is split across worker processes: each
worker gets about the same number of partitions and runs one range run per group over its share
of the assets. Every asset still lies in exactly one run, so nothing is fetched or written twice.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import dagster as dg

from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, group_job_name
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.windows import backfill_sessions

if TYPE_CHECKING:
    from dagster._core.instance.ref import InstanceRef


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


PARTITIONS_PER_WORKER = 500
"""A worker costs a few seconds to start (import Dagster, build the definitions); below this many
partitions per worker the start-up would eat the gain."""


def partitions_of(plans: Sequence[GroupPlan]) -> int:
    return sum(len(p.specs) * len(p.sessions) for p in plans)


def auto_workers(plans: Sequence[GroupPlan], cpus: int | None = None) -> int:
    """One worker per core (at most 4), but no more than one per ``PARTITIONS_PER_WORKER``."""
    cap = min(cpus or os.cpu_count() or 1, 4)
    return max(1, min(cap, partitions_of(plans) // PARTITIONS_PER_WORKER))


def shard_plans(plans: Sequence[GroupPlan], workers: int) -> list[list[GroupPlan]]:
    """Split the assets among ``workers`` so each gets about the same number of partitions.

    Greedy, largest first: each (asset, sessions) unit goes to the least loaded worker. A worker
    then runs one range run per group over its assets, so every asset is in exactly one run.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    units = sorted(
        ((len(p.sessions), i, spec) for i, p in enumerate(plans) if p.sessions for spec in p.specs),
        key=lambda u: -u[0],
    )
    loads = [0] * workers
    shares: list[dict[int, list[AssetSpecification]]] = [defaultdict(list) for _ in range(workers)]
    for cost, plan_index, spec in units:
        w = loads.index(min(loads))
        shares[w][plan_index].append(spec)
        loads[w] += cost
    shards = []
    for share in shares:
        if share:
            shards.append([GroupPlan(plans[i].job_name, share[i], plans[i].sessions) for i in sorted(share)])
    return shards


def run_backfill(
    make_defs: Callable[[], dg.Definitions],
    instance: dg.DagsterInstance,
    plans: Sequence[GroupPlan],
    workers: int = 1,
) -> list[GroupRun]:
    """Run the plans; with ``workers`` > 1 in that many processes on the same Dagster instance.

    ``make_defs`` must be picklable (a module-level function or a ``functools.partial`` of one)
    when ``workers`` > 1: each worker builds its own definitions.
    """
    shards = shard_plans(plans, workers)
    if len(shards) <= 1:
        return _run_plans(make_defs(), instance, [p for shard in shards for p in shard])
    try:  # fail here, clearly, rather than as a broken pool in every worker
        pickle.loads(pickle.dumps(make_defs))
    except Exception as e:
        raise TypeError(f"workers > 1 need definitions that can be sent to a worker process: {e}") from e
    ref = instance.get_ref()
    # spawn, not fork: the parent holds Dagster's and SQLAlchemy's threads and connections
    with ProcessPoolExecutor(len(shards), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(shard, pool.submit(_run_shard, make_defs, ref, shard)) for shard in shards]
        out: list[GroupRun] = []
        for shard, future in futures:
            try:
                out += future.result()
            except Exception as e:  # a worker that died still reports every run it owned
                out += [_not_run(p, f"worker failed: {type(e).__name__}: {e}") for p in shard]
    return sorted(out, key=lambda r: (r.job_name, r.first_session))


def _run_shard(make_defs: Callable[[], dg.Definitions], ref: InstanceRef, plans: Sequence[GroupPlan]) -> list[GroupRun]:
    with dg.DagsterInstance.from_ref(ref) as instance:
        return _run_plans(make_defs(), instance, plans)


def _not_run(plan: GroupPlan, error: str) -> GroupRun:
    return GroupRun(
        plan.job_name, "", False, len(plan.specs), plan.sessions[0], plan.sessions[-1], len(plan.sessions), error
    )


def _run_plans(defs: dg.Definitions, instance: dg.DagsterInstance, plans: Sequence[GroupPlan]) -> list[GroupRun]:
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
