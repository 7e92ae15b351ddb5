"""Runs whose process is gone are marked failed, so they never hold a run-queue slot forever.

``marketcov backfill`` executes runs in its own processes, outside any run launcher, so Dagster's
run monitoring cannot see them die. Each such run is tagged with the identity of the process
executing it; every ``marketcov`` command that opens the instance, and a sensor in the daemon,
mark a STARTED run whose process has ended as FAILURE with the reason (which the failure sensor
then mails once), and free the pool slots it held, which marking it failed does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from marketcov_dagster.defs.pools import free_slots, release_finished_runs
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
        free_slots(instance, run.run_id)
        failed.append(run.run_id)
    return failed


@dataclass(frozen=True)
class Cleanup:
    failed: list[str]  # runs marked failed: their process is gone
    released: dict[str, list[str]]  # finished runs whose pool slots were freed -> their pools

    def lines(self) -> list[str]:
        out = [f"run {r} lost its process; marked failed and its pool slots freed" for r in self.failed]
        out += [
            f"freed the slots finished run {r} still held in pool(s) {', '.join(pools)}"
            for r, pools in self.released.items()
        ]
        return out


def clean_up(instance: dg.DagsterInstance) -> Cleanup:
    """Fail the runs whose process is gone, then free the pool slots of every finished run (a
    daemon-launched run worker killed, a run marked failed in the UI) so no pool stays jammed."""
    failed = fail_orphaned_runs(instance)
    return Cleanup(failed, release_finished_runs(instance))


def build_orphan_sensor(interval_seconds: int = 120) -> dg.SensorDefinition:
    @dg.sensor(
        name=ORPHAN_SENSOR,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks runs started by `marketcov backfill` whose process has ended (kill -9, crash, reboot) "
        "as failed, so they never fill the run queue (the failure alert mails each once), and frees the pool "
        "slots any finished run still holds, so they never jam the vendor's pool.",
    )
    def orphaned_runs(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        done = clean_up(context.instance)
        failed = done.failed
        message = f"marked {len(failed)} orphaned run(s) failed" + (f": {', '.join(failed)}" if failed else "")
        message += f"; freed the pool slots of {len(done.released)} finished run(s)"
        for line in done.lines():
            context.log.warning(line)
        return dg.SkipReason(message)

    return orphaned_runs
