"""Run health from Dagster's run history: a run's checksum report, and runs by status, the
rolling success rate, failed runs with their first error, queue depth and daemon heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from marketcov_dagster.defs.backfill import failure_cause
from marketcov_dagster.defs.pools import pool_states
from marketcov_dagster.lib.pools import statuses_json
from marketcov_dagster.lib.reads import lineage_of_run
from marketcov_dagster.lib.symbols import symbol_to_key_part
from marketcov_dagster.lib.warehouse import Warehouse

SUCCESS_GOAL = 0.99
FAILED_RUNS_SHOWN = 20
ERROR_EVENTS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def run_report(instance: dg.DagsterInstance, wh: Warehouse, run_id: str, ui_url: str) -> dict[str, Any] | None:
    """What one run wrote and what its checks found, per partition; None for an unknown run."""
    record = next(iter(instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)), None)
    if record is None:
        return None
    run = record.dagster_run
    checks: list[dict[str, Any]] = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = entry.dagster_event.asset_check_evaluation_data if entry.dagster_event else None
        if data is None:
            continue
        checks.append(
            {
                "asset_key": data.asset_key.to_user_string(),
                "check_name": data.check_name,
                "partition": getattr(data, "partition", None),
                "passed": bool(data.passed),
                "severity": data.severity.value,
            }
        )
    by_partition: dict[tuple[str, str], dict[str, bool]] = {}
    for c in checks:
        if c["partition"]:
            by_partition.setdefault((str(c["asset_key"]), str(c["partition"])), {})[str(c["check_name"])] = bool(
                c["passed"]
            )
    partitions = []
    for row in lineage_of_run(wh, run_id):
        key = f"ohlcv/{row['interval']}/{symbol_to_key_part(row['symbol'])}"
        partitions.append(
            {
                "asset_key": key,
                "session": row["session"],
                "vendor": row["vendor"],
                "rows": row["rows"],
                "expected_rows": row["expected_rows"],
                "checksum": row["checksum"],
                "previous_checksum": row["previous_checksum"],
                "checks": by_partition.get((key, row["session"]), {}),
            }
        )
    return {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "status": run.status.value,
        "start_time": _iso(record.start_time),
        "end_time": _iso(record.end_time),
        "ui_url": f"{ui_url}/runs/{run.run_id}",
        "partitions": partitions,
        "check_results": checks,
    }


def _first_error(instance: dg.DagsterInstance, run_id: str) -> str:
    events = [e.dagster_event for e in instance.all_logs(run_id, of_type=ERROR_EVENTS) if e.dagster_event is not None]
    return failure_cause(events) if events else "run failed (no error event recorded)"


def run_history(instance: dg.DagsterInstance, hours: int, ui_url: str, now: datetime) -> dict[str, Any]:
    """The part of the report read from the run history (a dozen counts and each failed run's
    first error): the server keeps it for a few seconds, as it keeps the status snapshot."""
    since = now - timedelta(hours=hours)
    month = now - timedelta(days=30)
    by_status = {
        s.value: instance.get_runs_count(dg.RunsFilter(statuses=[s], created_after=since)) for s in dg.DagsterRunStatus
    }
    ok = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], created_after=month))
    bad = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=month))
    failed = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], created_after=since), limit=FAILED_RUNS_SHOWN
    )
    return {
        "hours": hours,
        "runs_by_status": {k: v for k, v in by_status.items() if v},
        "success_rate_30d": round(ok / (ok + bad), 4) if ok + bad else None,
        "success_goal": SUCCESS_GOAL,
        "finished_runs_30d": ok + bad,
        "failed_runs": [
            {
                "run_id": r.dagster_run.run_id,
                "job_name": r.dagster_run.job_name,
                "at": _iso(r.end_time),
                "error": _first_error(instance, r.dagster_run.run_id),
                "ui_url": f"{ui_url}/runs/{r.dagster_run.run_id}",
            }
            for r in failed
        ],
    }


def live_state(instance: dg.DagsterInstance) -> dict[str, Any]:
    """What an operator watches change: the queue, runs in progress, daemons, who holds each pool."""
    statuses = instance.get_daemon_statuses()
    return {
        "queue_depth": instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED])),
        "in_progress": instance.get_runs_count(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
        ),
        "daemons": [
            {
                "daemon_type": t,
                "last_heartbeat": _iso(s.last_heartbeat.timestamp) if s.last_heartbeat else None,
                "healthy": bool(s.healthy),
            }
            for t, s in sorted(statuses.items())
        ],
        "pools": statuses_json(pool_states(instance)),
    }
