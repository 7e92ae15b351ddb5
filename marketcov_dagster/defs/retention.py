"""The retention job: delete bars older than each expiring asset's window, daily.

The warehouse deletes the bars and records lineage, and an observation on each asset shows in the
UI what this run expired. Dagster keeps the old materialization events (its SQL storages
cannot wipe single partitions), but the partitions definition starts at the same window start,
so the UI's partition status never lists them, and coverage counts them as expired (materialized
once, now before the window), never as missing.

No ``from __future__ import annotations`` here: Dagster inspects the op's annotations.
"""

from collections.abc import Callable, Sequence
from datetime import datetime

import dagster as dg

from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.retention import expire
from marketcov_dagster.lib.universe import AssetSpecification

RETENTION_JOB = "retention_job"


def build_retention_job(
    expiring: Sequence[AssetSpecification], clock: Callable[[], datetime]
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:

    @dg.op(description="Delete bars older than each expiring asset's window and record it in lineage.")
    def expire_old_bars(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
        wh = warehouse.get()
        now = clock()
        for spec in expiring:
            key = dg.AssetKey(list(spec.key_path))
            e = expire(wh, spec, now, context.run_id)
            if not e.sessions and not e.bars_deleted:
                continue
            context.log_event(
                dg.AssetObservation(
                    asset_key=key,
                    metadata={
                        "expired_before": e.first_kept,
                        "expired_sessions": len(e.sessions),
                        "bars_deleted": e.bars_deleted,
                    },
                )
            )
            context.log.info(
                f"{spec.key_str}: expired {len(e.sessions)} session(s) before {e.first_kept}, "
                f"{e.bars_deleted} bars deleted"
            )

    @dg.job(
        name=RETENTION_JOB,
        description="Delete minute bars (and any interval set to expire) older than the rolling window.",
    )
    def retention_job() -> None:
        expire_old_bars()

    schedule = dg.ScheduleDefinition(
        name="retention_schedule",
        cron_schedule="15 2 * * *",
        execution_timezone="UTC",
        job=retention_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily at 02:15 UTC: expire bars that left the rolling window.",
    )
    return retention_job, schedule
