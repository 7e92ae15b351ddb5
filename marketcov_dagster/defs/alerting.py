"""Alert sensors: freshness incidents, failed ERROR checks and failed runs, emailed via the outbox.

The logic lives in ``lib.freshness`` and ``lib.alerts``; these sensors only read the clock, the
warehouse and the event log, and report what they did as the tick's message.

No ``from __future__ import annotations`` here: Dagster inspects the resource annotations.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import dagster as dg

from marketcov_dagster.defs.groups import step_error
from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.resources import EmailResource, WarehouseResource
from marketcov_dagster.lib import alerts
from marketcov_dagster.lib.freshness import freshness_now, root_causes
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.warehouse import Warehouse

FRESHNESS_SENSOR = "freshness_alerts"
FAILURE_SENSOR = "failure_alerts"
_RUN_END_EVENTS = {
    "failure": dg.DagsterEventType.RUN_FAILURE,
    "success": dg.DagsterEventType.RUN_SUCCESS,
}
_PAGE = 100


def _flush_note(result: alerts.FlushResult) -> str:
    note = f"mail sent {result.sent}, pending {result.pending}"
    return note + (f" ({result.error})" if result.error else "")


def build_freshness_sensor(
    specs: Sequence[AssetSpecification],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    interval_seconds: int = 600,
) -> dg.SensorDefinition:
    vendors_by_asset = {s.key_str: s.vendors for s in specs}

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval_seconds} s: lag of each asset's newest stored bar against the calendar. "
        "A lag over the threshold opens an incident and sends one email; catching up resolves it with one "
        "recovery email.",
    )
    def freshness_alerts(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource, email: EmailResource
    ) -> dg.SkipReason:
        now = clock()
        wh = warehouse.get()
        results = freshness_now(wh, specs, now)
        changes = alerts.update_incidents(wh, root_causes(results, specs), vendors_by_asset, email.style(), now)
        lost = _queue_lost(context.instance, wh, specs, email.style(), now)
        flushed = alerts.flush_outbox(wh, email.settings())
        stale = [f.asset_key for f in results if f.stale]
        message = (
            f"{len(stale)}/{len(results)} asset(s) stale; incidents opened {changes.opened}, "
            f"resolved {changes.resolved}, still open {len(changes.still_open)}; "
            + (f"{lost} lost-partition alert(s) queued; " if lost else "")
            + _flush_note(flushed)
        )
        context.log.info(message)
        return dg.SkipReason(message)

    return freshness_alerts


def _queue_lost(
    instance: dg.DagsterInstance,
    wh: Warehouse,
    specs: Sequence[AssetSpecification],
    style: alerts.AlertStyle,
    now: datetime,
) -> int:
    """One email per asset whose written partitions are lost (coverage reconciled with the warehouse)."""
    queued = 0
    bars = [s for s in specs if not s.indicators]
    for spec, cov in zip(bars, coverage_for(instance, bars, now, wh), strict=True):
        if cov.lost:
            subject, body = alerts.lost_mail(style, spec.key_str, cov.lost)
            queued += alerts.enqueue(wh, alerts.lost_dedup_key(spec.key_str, cov.lost), "lost", subject, body)
    return queued


def _latest_storage_id(instance: dg.DagsterInstance, event_type: dg.DagsterEventType) -> int:
    res = instance.fetch_run_status_changes(event_type, limit=1)  # type: ignore[arg-type]
    return res.records[0].storage_id if res.records else 0


def _queue_check_failures(
    instance: dg.DagsterInstance, wh: Warehouse, style: alerts.AlertStyle, run_id: str, job_name: str
) -> int:
    """One email per (asset, check) that failed at ERROR severity in the run, naming its partitions."""
    failed: dict[tuple[str, str], list[dg.AssetCheckEvaluation]] = defaultdict(list)
    for rec in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        event = rec.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if (
            isinstance(evaluation, dg.AssetCheckEvaluation)
            and not evaluation.passed
            and evaluation.severity == dg.AssetCheckSeverity.ERROR
        ):
            failed[(evaluation.asset_key.to_user_string(), evaluation.check_name)].append(evaluation)
    queued = 0
    for (asset_key, check_name), evaluations in sorted(failed.items()):
        partitions = sorted({e.partition for e in evaluations if e.partition})
        descriptions = [f"{e.partition or 'summary'}: {e.description}" for e in evaluations if e.description]
        subject, body = alerts.check_failure_mail(
            style, asset_key, check_name, run_id, job_name, partitions, descriptions
        )
        queued += alerts.enqueue(wh, f"check_failed:{run_id}:{asset_key}:{check_name}", "check_failed", subject, body)
    return queued


def _step_errors(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """``step: error`` for each failed step of the run, the part an on-call reader needs."""
    out = []
    for rec in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = rec.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if event and error is not None:
            out.append(f"step {event.step_key}: {step_error(error)}")
    return out


def build_failure_sensor(interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name=FAILURE_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Emails each failed run, and each asset check that failed at ERROR severity (a failed check "
        "does not fail its run), once per run; also retries any alert email still pending.",
    )
    def failure_alerts(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource, email: EmailResource
    ) -> dg.SensorResult:  # type: ignore[type-arg]
        instance = context.instance
        if context.cursor:
            cursor: dict[str, int] = json.loads(context.cursor)
        else:  # start now: runs that ended before the sensor first ran are not its to report
            cursor = {name: _latest_storage_id(instance, t) for name, t in _RUN_END_EVENTS.items()}
        wh = warehouse.get()
        style = email.style()
        runs = checks = 0
        for name, event_type in _RUN_END_EVENTS.items():
            res = instance.fetch_run_status_changes(
                dg.RunStatusChangeRecordsFilter(event_type, after_storage_id=cursor[name]),  # type: ignore[arg-type]
                limit=_PAGE,
                ascending=True,
            )
            for rec in res.records:
                entry = rec.event_log_entry
                job_name = entry.job_name or "?"
                if name == "failure":
                    why = "\n".join([entry.message or "", *_step_errors(instance, entry.run_id)])
                    subject, body = alerts.run_failure_mail(style, entry.run_id, job_name, why)
                    runs += alerts.enqueue(wh, f"run_failed:{entry.run_id}", "run_failed", subject, body)
                checks += _queue_check_failures(instance, wh, style, entry.run_id, job_name)
                cursor[name] = rec.storage_id
        flushed = alerts.flush_outbox(wh, email.settings())
        message = f"queued {runs} run failure(s) and {checks} failed check(s); {_flush_note(flushed)}"
        context.log.info(message)
        return dg.SensorResult(skip_reason=message, cursor=json.dumps(cursor, allow_nan=False))

    return failure_alerts
