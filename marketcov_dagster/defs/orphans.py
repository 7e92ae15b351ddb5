"""Runs whose process is gone are marked failed, so they never hold a run-queue slot forever.

``marketcov backfill`` executes runs in its own processes, outside any run launcher, so Dagster's
run monitoring cannot see them die. Each such run is tagged with the identity of the process
executing it; every ``marketcov`` command that opens the instance, and a sensor in the daemon,
mark a STARTED run whose process has ended as FAILURE with the reason (which the failure sensor
then mails once).
"""

from __future__ import annotations

import dagster as dg

from marketcov_dagster.lib.processes import ProcessId, current, is_gone

LAUNCHED_BY_TAG = "marketcov/launched_by"
PROCESS_TAG_PREFIX = "marketcov/process_"
ORPHAN_SENSOR = "orphaned_runs_sensor"

_IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes a run started here."""
    return current().as_tags(PROCESS_TAG_PREFIX)


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark every in-flight CLI run whose executing process has ended as failed; their run ids."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=_IN_FLIGHT, tags={LAUNCHED_BY_TAG: "cli"}))
    failed = []
    for run in runs:
        proc = ProcessId.from_tags(dict(run.tags), PROCESS_TAG_PREFIX)
        if proc is None or not is_gone(proc):
            continue
        instance.report_run_failed(
            run,
            f"The process executing this run (pid {proc.pid} on {proc.host}) ended without finishing it "
            "(killed, crashed or the machine went down); marked failed so it no longer holds a queue slot. "
            "Partitions it wrote stay written; rerun the range to complete it.",
        )
        failed.append(run.run_id)
    return failed


def build_orphan_sensor(interval_seconds: int = 120) -> dg.SensorDefinition:
    @dg.sensor(
        name=ORPHAN_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks runs started by `marketcov backfill` whose process has ended (kill -9, crash, reboot) "
        "as failed, so they never fill the run queue; the failure alert mails each once.",
    )
    def orphaned_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        failed = fail_orphaned_runs(context.instance)
        message = f"marked {len(failed)} orphaned run(s) failed" + (f": {', '.join(failed)}" if failed else "")
        if failed:
            context.log.warning(message)
        return dg.SkipReason(message)

    return orphaned_runs
