"""The opt-in reconciliation job: a sample of each asset's stored sessions re-fetched from the
other vendors of its chain and compared bar by bar (``lib/reconcile``); findings go to the
remediation log and show as observations on the asset. Stored data is never changed. Its
schedule is off until started in the UI.

No ``from __future__ import annotations`` here: Dagster inspects the op's annotations.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import dagster as dg

from marketcov_dagster.defs.resources import VendorsResource, WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.reconcile import reconcile_asset, sample_sessions
from marketcov_dagster.lib.universe import AssetSpecification, ReconciliationSettings, VendorSettings

RECONCILE_JOB = "reconcile_job"


def build_reconcile_job(
    specs: Sequence[AssetSpecification],
    vendor_settings: Mapping[str, VendorSettings],
    settings: ReconciliationSettings,
    clock: Callable[[], datetime],
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    chained = [s for s in specs if len(s.vendors) > 1]  # one vendor has nobody to be compared with

    @dg.op(description="Re-fetch sampled stored sessions from the other vendors and log divergences.")
    def reconcile_vendors(
        context: dg.OpExecutionContext, warehouse: WarehouseResource, vendors: VendorsResource
    ) -> None:
        wh = warehouse.get()
        if not chained:
            context.log.info("no asset has more than one vendor: nothing to reconcile")
        for spec in chained:
            cal = get_calendar(spec.calendar)
            last_closed = cal.last_closed_session(clock())
            stored = {str(r["session"]) for r in wh.lineage(spec.symbol, spec.interval).to_dict("records")}
            # only sessions that have closed: an open session's answer grows by the minute
            closed = [d for d in stored if last_closed is not None and d <= last_closed.isoformat()]
            sample = sample_sessions(closed, settings.sample_sessions)
            chain = vendors.chain(spec.vendors, cal, vendor_settings, wh)
            entries = reconcile_asset(wh, cal, spec.symbol, spec.interval, chain, sample, settings, context.run_id)
            wh.log_remediation(entries)
            kinds = [str(e["kind"]) for e in entries]
            context.log_event(
                dg.AssetObservation(
                    asset_key=dg.AssetKey(list(spec.key_path)),
                    metadata={
                        "reconciled_sessions": len(sample),
                        "vendor_divergences": kinds.count("vendor_divergence"),
                        "revised_sessions": kinds.count("revised"),
                    },
                )
            )
            context.log.info(f"{spec.key_str}: {len(sample)} session(s) compared; {len(entries)} finding(s)")

    @dg.job(
        name=RECONCILE_JOB,
        description="Compare a sample of stored sessions with the other vendors of each chain (changes no data).",
    )
    def reconcile_job() -> None:
        reconcile_vendors()

    schedule = dg.ScheduleDefinition(
        name="reconcile_schedule",
        cron_schedule=settings.cron,
        execution_timezone="UTC",
        job=reconcile_job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Opt-in: {settings.cron} (UTC), reconcile {settings.sample_sessions} stored sessions per asset.",
    )
    return reconcile_job, schedule
