"""Range backfills launched from Python (the ``marketcov backfill`` command).

One run per (calendar, interval) group covers every selected asset of the group over the whole
session range, exactly as a single-run backfill from the UI would: the range travels in the
``dagster/asset_partition_range_*`` run tags and each asset fetches it with one vendor request.

Dagster's own cost per partition (its planned event, materialization and three check
evaluations) dominates a backfill, so the runs are set up to write events cheaply:

- the instance's storages hold their database connections for the backfill
  (``optimize_for_webserver``, as dagster-webserver does) instead of opening one per event: on a
  PostgreSQL instance each event otherwise pays a new server connection;
- ``DAGSTER_EVENT_BATCH_SIZE`` (unless already set) lets a range run's materializations and
  planned events go to the event log in batches (PostgreSQL; SQLite stores them one by one).

What is left is Python on one core, so a large backfill is also split across worker processes:
each worker gets about the same number of partitions and runs one range run per group over its
share of the assets. Every asset still lies in exactly one run, so nothing is fetched or written
twice. BENCHMARKS.md has what each of these is worth.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING

import dagster as dg

from marketcov_dagster.defs.groups import step_error
from marketcov_dagster.defs.indicators import indicator_job_name
from marketcov_dagster.defs.orphans import LAUNCHED_BY_TAG, process_tags
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, group_job_name
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.gaps import fill_runs
from marketcov_dagster.lib.intervals import is_intraday
from marketcov_dagster.lib.processes import die_with_parent
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.windows import BadRangeError, backfill_sessions

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
    skipped: str = ""  # why the group has no session to run (e.g. XNYS on a weekend range)
    indicators: bool = False  # the indicator assets of ``specs`` rather than the bars

    @property
    def keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey(list(s.indicator_key_path if self.indicators else s.key_path)) for s in self.specs]

    @property
    def stage(self) -> int:
        """Bars fetched from vendors first, then candles resampled from them, then indicators."""
        return 2 if self.indicators else 1 if self.specs[0].derived_from else 0


def plan_backfill(
    specs: Sequence[AssetSpecification],
    start: date | None,
    end: date | None,
    now: datetime,
    indicator_intervals: Sequence[str] = (),
) -> list[GroupPlan]:
    """Resolve the session range per group, before anything runs. A group with no session in the
    range (an exchange over a weekend that crypto trades) is kept with ``skipped`` saying why;
    ``BadRangeError`` only when no group has a session to run."""
    groups: dict[tuple[str, str], list[AssetSpecification]] = defaultdict(list)
    for s in specs:
        groups[s.group].append(s)
    plans = []
    for (calendar, interval), members in sorted(groups.items()):
        name = group_job_name(calendar, interval)
        try:
            sessions = backfill_sessions(
                get_calendar(calendar),
                members[0].window_days,
                now,
                start,
                end,
                include_open=is_intraday(members[0].interval),
                whole_week=not is_intraday(members[0].interval),
            )
        except BadRangeError as e:
            plans.append(GroupPlan(name, members, [], skipped=str(e)))
            continue
        plans.append(GroupPlan(name, members, sessions))
        if interval in indicator_intervals:
            plans.append(GroupPlan(indicator_job_name(calendar, interval), members, sessions, indicators=True))
    if plans and not any(p.sessions for p in plans):
        raise BadRangeError("; ".join(dict.fromkeys(p.skipped for p in plans)))
    return plans


def plan_missing(
    specs: Sequence[AssetSpecification],
    coverages: Sequence[AssetCoverage],
    start: date | None = None,
    end: date | None = None,
) -> list[GroupPlan]:
    """``backfill --missing``: range runs over only the sessions coverage shows missing (lost
    ones included, when coverage was reconciled with the warehouse) or partial, within
    ``start``..``end`` when given. Indicator specs plan their own runs, after the bars."""
    holes: dict[tuple[str, str, bool], dict[AssetSpecification, list[date]]] = defaultdict(dict)
    for spec, cov in zip(specs, coverages, strict=True):
        if not cov.first_expected or not cov.last_expected:
            continue
        todo = set(cov.missing) | set(cov.partial)
        days = sorted(d for d in map(date.fromisoformat, todo) if (not start or d >= start) and (not end or d <= end))
        if days:
            holes[(spec.calendar, spec.interval, spec.indicators)][spec] = days
    plans = []
    for (calendar, interval, indicators), per_asset in sorted(holes.items()):
        cal = get_calendar(calendar)
        name = indicator_job_name(calendar, interval) if indicators else group_job_name(calendar, interval)
        for members, first, last in fill_runs(cal, per_asset):
            bars = [replace(m, indicators=False) for m in members]
            plans.append(GroupPlan(name, bars, cal.sessions(first, last), indicators=indicators))
    return plans


def partitions_by_asset(plans: Sequence[GroupPlan]) -> dict[str, list[str]]:
    """Asset key -> the sessions the plans materialize (what a backfill claims)."""
    out: dict[str, list[str]] = {}
    for p in plans:
        for key in p.keys:
            out.setdefault(key.to_user_string(), []).extend(d.isoformat() for d in p.sessions)
    return out


def without_taken(plans: Sequence[GroupPlan], taken: dict[str, set[str]]) -> tuple[list[GroupPlan], int]:
    """The plans less the partitions another backfill or run is materializing now (regrouped into
    as few range runs as what is left allows), and how many partitions were left out."""
    out: list[GroupPlan] = []
    skipped = 0
    for p in plans:
        busy = {spec: taken.get(key.to_user_string(), set()) for spec, key in zip(p.specs, p.keys, strict=True)}
        if not p.sessions or not any(busy.values()):
            out.append(p)
            continue
        left = {spec: [d for d in p.sessions if d.isoformat() not in busy[spec]] for spec in p.specs}
        skipped += sum(len(p.sessions) - len(v) for v in left.values())
        cal = get_calendar(p.specs[0].calendar)
        for members, first, last in fill_runs(cal, {k: v for k, v in left.items() if v}):
            out.append(replace(p, specs=members, sessions=cal.sessions(first, last)))
    return out, skipped


def inflight_partitions(instance: dg.DagsterInstance, specs: Sequence[AssetSpecification]) -> dict[str, set[str]]:
    """Asset key -> sessions that queued or running runs (from the UI, the daemon, another
    backfill) are materializing now, for the given assets."""
    calendars = {s.key_str: s.calendar for s in specs} | {"/".join(s.indicator_key_path): s.calendar for s in specs}
    out: dict[str, set[str]] = {}
    statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses)):
        tags = dict(run.tags)
        for key in run.asset_selection or ():
            name = key.to_user_string()
            if name not in calendars:
                continue
            if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
                days = get_calendar(calendars[name]).sessions(
                    date.fromisoformat(tags[RANGE_START_TAG]), date.fromisoformat(tags[RANGE_END_TAG])
                )
                out.setdefault(name, set()).update(d.isoformat() for d in days)
            elif "dagster/partition" in tags:
                out.setdefault(name, set()).add(tags["dagster/partition"])
    return out


def stages(plans: Sequence[GroupPlan]) -> list[list[GroupPlan]]:
    """The plans in the order their data depends on each other: fetched bars first, then what is
    derived from them (each stage runs after the one before has finished)."""
    by_stage = [[p for p in plans if p.stage == i] for i in range(3)]
    return [s for s in by_stage if s]


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
            shards.append([replace(plans[i], specs=share[i]) for i in sorted(share)])
    return shards


SLOW_ON_SQLITE = 2_000
"""Partitions from which a backfill on a SQLite instance is worth the hint to use PostgreSQL."""


def instance_hint(instance: dg.DagsterInstance, plans: Sequence[GroupPlan]) -> str | None:
    """A note for a large backfill on an instance that keeps its event log in SQLite."""
    from dagster._core.storage.event_log import SqliteEventLogStorage  # no public way to ask

    partitions = partitions_of(plans)
    if partitions < SLOW_ON_SQLITE or not isinstance(instance.event_log_storage, SqliteEventLogStorage):
        return None
    return (
        f"this Dagster instance keeps its event log in Dagster's default SQLite storage, which opens a "
        f"connection per event; {partitions:,} partitions would run several times faster with the "
        "event_log_storage of the project's dagster.yaml, or on a PostgreSQL instance "
        "(README: Production, BENCHMARKS.md)"
    )


BACKFILL_TAG = "marketcov/backfill"
"""On every run of one ``marketcov backfill`` command: its id, so the command can follow its runs."""

EVENT_BATCH_ENV = "DAGSTER_EVENT_BATCH_SIZE"
EVENT_BATCH_SIZE = 200


def run_backfill(
    make_defs: Callable[[], dg.Definitions],
    instance: dg.DagsterInstance,
    plans: Sequence[GroupPlan],
    workers: int = 1,
    *,
    event_batch_size: int = EVENT_BATCH_SIZE,
    hold_connections: bool = True,
    tags: Mapping[str, str] | None = None,
) -> list[GroupRun]:
    """Run the plans, stage by stage (``stages``); with ``workers`` > 1 in that many processes on
    the same Dagster instance.

    ``make_defs`` must be picklable (a module-level function or a ``functools.partial`` of one)
    when ``workers`` > 1: each worker builds its own definitions. ``event_batch_size`` (0: off)
    applies unless ``DAGSTER_EVENT_BATCH_SIZE`` is already set; ``hold_connections`` leaves
    ``instance`` (and each worker's) holding its database connections afterwards; ``tags`` go on
    every run (``BACKFILL_TAG`` names the command that started them).
    """
    extra = dict(tags or {})
    out: list[GroupRun] = []
    defs: dg.Definitions | None = None
    with _event_batching(event_batch_size):
        for stage in stages(plans):  # bars before the candles and indicators derived from them
            shards = shard_plans(stage, workers)
            if len(shards) <= 1:
                defs = defs or make_defs()
                out += _run_plans(defs, instance, [p for shard in shards for p in shard], hold_connections, extra)
                continue
            try:  # fail here, clearly, rather than as a broken pool in every worker
                pickle.loads(pickle.dumps(make_defs))
            except Exception as e:
                raise TypeError(f"workers > 1 need definitions that can be sent to a worker process: {e}") from e
            out += _run_in_workers(make_defs, instance.get_ref(), shards, hold_connections, extra)
    return out


@contextmanager
def _event_batching(size: int) -> Iterator[None]:
    """Dagster reads the variable as events arrive; spawned workers inherit it."""
    if size <= 0 or EVENT_BATCH_ENV in os.environ:
        yield
        return
    os.environ[EVENT_BATCH_ENV] = str(size)
    try:
        yield
    finally:
        os.environ.pop(EVENT_BATCH_ENV, None)


def _run_in_workers(
    make_defs: Callable[[], dg.Definitions],
    ref: InstanceRef,
    shards: list[list[GroupPlan]],
    hold_connections: bool,
    tags: dict[str, str],
) -> list[GroupRun]:
    # spawn, not fork: the parent holds Dagster's and SQLAlchemy's threads and connections
    # workers die with this process (SIGKILL included): none lingers to write after we are gone
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(len(shards), mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        futures = [(shard, pool.submit(_run_shard, make_defs, ref, shard, hold_connections, tags)) for shard in shards]
        out: list[GroupRun] = []
        for shard, future in futures:
            try:
                out += future.result()
            except Exception as e:  # a worker that died still reports every run it owned
                out += [_not_run(p, f"worker failed: {type(e).__name__}: {e}") for p in shard]
    except BaseException:  # interrupted (SIGINT, SIGTERM): stop the workers now, not after their runs
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sorted(out, key=lambda r: (r.job_name, r.first_session))


def _run_shard(
    make_defs: Callable[[], dg.Definitions],
    ref: InstanceRef,
    plans: Sequence[GroupPlan],
    hold_connections: bool,
    tags: dict[str, str],
) -> list[GroupRun]:
    with dg.DagsterInstance.from_ref(ref) as instance:
        return _run_plans(make_defs(), instance, plans, hold_connections, tags)


def _not_run(plan: GroupPlan, error: str) -> GroupRun:
    return GroupRun(
        plan.job_name, "", False, len(plan.specs), plan.sessions[0], plan.sessions[-1], len(plan.sessions), error
    )


def failure_cause(events: Sequence[dg.DagsterEvent]) -> str:
    """What made a run fail, in one line: the op's own error of its first failed step (e.g.
    ``ohlcv_xnys_1d: ohlcv/1d/AAPL: VendorError: …``), not Dagster's "Execution of step … failed"."""
    for e in events:
        if e.event_type_value != "STEP_FAILURE" or e.step_failure_data is None:
            continue
        if e.step_failure_data.error is not None:
            return f"{e.step_key}: {step_error(e.step_failure_data.error)}"
    failures = [e.message for e in events if e.is_failure and e.message]
    return failures[0] if failures else "run failed"


HELD_CONNECTIONS_OVERFLOW = 4
"""Connections a storage may open beyond the one it holds (Dagster's threads rarely need any)."""


def _run_plans(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    plans: Sequence[GroupPlan],
    hold_connections: bool,
    tags: dict[str, str],
) -> list[GroupRun]:
    if hold_connections:
        # The storages open a connection per event by default (so that idle processes hold none);
        # a backfill writes thousands of events, so it keeps one open. No-op on SQLite storages.
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=HELD_CONNECTIONS_OVERFLOW)
    out = []
    for plan in plans:
        if not plan.sessions:
            continue
        job = defs.resolve_job_def(plan.job_name)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=plan.keys,
            tags={
                RANGE_START_TAG: plan.sessions[0].isoformat(),
                RANGE_END_TAG: plan.sessions[-1].isoformat(),
                LAUNCHED_BY_TAG: "cli",
                **process_tags(),
                **tags,
            },
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
        error = None if result.success else failure_cause(result.all_events)
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
