"""The gap-healing sensor: the "restore coverage" button, pressed by Dagster on a schedule.

Off by default (start it in the UI under Automation). Each tick computes coverage, and requests
runs for missing and partial sessions inside the windows, newest first, at most
``healing.max_runs_per_tick`` per tick and ``healing.max_in_flight`` queued or running at once.
The runs go through the vendor pools like any other, so healing never outruns the rate limits.
"""

from collections.abc import Callable, Sequence
from datetime import datetime

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.partitions import group_job_name
from marketcov_dagster.lib.healing import plan_healing
from marketcov_dagster.lib.universe import AssetSpecification, HealingSettings

HEAL_SENSOR = "gap_healing"
HEAL_TAG = "marketcov/heal"
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def build_healing_sensor(
    specs: Sequence[AssetSpecification],
    jobs: Sequence[UnresolvedAssetJobDefinition],
    settings: HealingSettings,
    clock: Callable[[], datetime],
) -> dg.SensorDefinition:
    @dg.sensor(
        name=HEAL_SENSOR,
        jobs=list(jobs),
        minimum_interval_seconds=settings.interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Requests runs for missing and partial sessions inside the windows, newest first: at most "
        f"{settings.max_runs_per_tick} per tick and {settings.max_in_flight} in flight. Off by default.",
    )
    def gap_healing(context: dg.SensorEvaluationContext) -> dg.SensorResult:  # type: ignore[type-arg]
        now = clock()
        active = context.instance.get_runs(filters=dg.RunsFilter(statuses=_ACTIVE))
        healing = [r for r in active if HEAL_TAG in r.tags]
        in_flight: set[tuple[str, str, str]] = set()
        for r in healing:
            calendar, interval, session = r.tags[HEAL_TAG].split("|")
            in_flight.add((calendar, interval, session))
        room = min(settings.max_runs_per_tick, settings.max_in_flight - len(healing))
        if room <= 0:
            return dg.SensorResult(skip_reason=f"{len(healing)} healing run(s) in flight; waiting")
        coverage = coverage_for(context.instance, specs, now)
        plan = plan_healing(list(zip(specs, coverage, strict=True)), room, in_flight)
        if not plan:
            return dg.SensorResult(skip_reason="no missing or partial session inside the windows")
        requests = [
            dg.RunRequest(
                job_name=group_job_name(run.calendar, run.interval),
                partition_key=run.session,
                asset_selection=[dg.AssetKey(k.split("/")) for k in run.asset_keys],
                run_key=f"heal:{run.calendar}:{run.interval}:{run.session}:{now:%Y-%m-%d}",
                tags={HEAL_TAG: f"{run.calendar}|{run.interval}|{run.session}"},
            )
            for run in plan
        ]
        context.log.info(f"requesting {len(requests)} healing run(s): {[r.partition_key for r in requests]}")
        return dg.SensorResult(run_requests=requests)

    return gap_healing
