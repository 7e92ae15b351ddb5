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
from marketcov_dagster.defs.indicators import indicator_job_name
from marketcov_dagster.defs.partitions import group_job_name
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.healing import HealRun, plan_healing
from marketcov_dagster.lib.universe import AssetSpecification, HealingSettings

HEAL_SENSOR = "gap_healing"
HEAL_TAG = "marketcov/heal"
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _tag(run: HealRun) -> str:
    """``calendar|interval|session``, and ``|indicators`` for an indicator run."""
    return "|".join(run.slot if run.kind != "ohlcv" else run.slot[:3])


def _job_name(run: HealRun) -> str:
    return (indicator_job_name if run.kind == "indicators" else group_job_name)(run.calendar, run.interval)


def _slot(tag: str) -> tuple[str, str, str, str]:
    calendar, interval, session, *kind = tag.split("|")
    return (calendar, interval, session, kind[0] if kind else "ohlcv")


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
    def gap_healing(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:  # type: ignore[type-arg]
        now = clock()
        active = context.instance.get_runs(filters=dg.RunsFilter(statuses=_ACTIVE))
        healing = [r for r in active if HEAL_TAG in r.tags]
        in_flight = {_slot(r.tags[HEAL_TAG]) for r in healing}
        room = min(settings.max_runs_per_tick, settings.max_in_flight - len(healing))
        if room <= 0:
            return dg.SensorResult(skip_reason=f"{len(healing)} healing run(s) in flight; waiting")
        # reconciled with the warehouse: partitions whose bars are gone are healed too
        coverage = coverage_for(context.instance, specs, now, warehouse.get())
        plan = plan_healing(list(zip(specs, coverage, strict=True)), room, in_flight)
        if not plan:
            return dg.SensorResult(skip_reason="no missing or partial session inside the windows")
        requests = [
            dg.RunRequest(
                job_name=_job_name(run),
                partition_key=run.session,
                asset_selection=[dg.AssetKey(k.split("/")) for k in run.asset_keys],
                run_key=f"heal:{':'.join(run.slot)}:{now:%Y-%m-%d}",
                tags={HEAL_TAG: _tag(run)},
            )
            for run in plan
        ]
        context.log.info(f"requesting {len(requests)} healing run(s): {[r.partition_key for r in requests]}")
        return dg.SensorResult(run_requests=requests)

    return gap_healing
