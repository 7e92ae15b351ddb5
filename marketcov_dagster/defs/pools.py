"""Read and release the instance's concurrency pools (``lib/pools.py`` describes them).

Dagster frees a step's pool slot when the step ends; a run whose process is killed never ends its
steps, and marking the run failed (``report_run_failed``) does not free them either. Every path
here that finds a run lost frees its slots, and ``release_finished_runs`` frees those of any run
that has finished whatever launched it (the CLI, the daemon, the UI), so that a kill never jams
the pool for the runs after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from marketcov_dagster.lib.pools import PoolState, build_state, wait_line, waits_of

if TYPE_CHECKING:
    from dagster._core.instance.ref import InstanceRef


def pool_states(instance: dg.DagsterInstance) -> list[PoolState]:
    """Every pool the instance knows, with the runs holding and waiting for its slots."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    infos = [storage.get_concurrency_info(key) for key in sorted(storage.get_concurrency_keys())]
    run_ids = {s.run_id for i in infos for s in i.claimed_slots} | {p.run_id for i in infos for p in i.pending_steps}
    status = {}
    if run_ids:
        for run in instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(run_ids))):
            status[run.run_id] = run.status.value
    return [
        build_state(
            i.concurrency_key,
            i.limit,
            [(s.run_id, s.step_key) for s in i.claimed_slots],
            [(p.run_id, p.step_key, p.enqueued_timestamp, p.assigned_timestamp is not None) for p in i.pending_steps],
            status,
        )
        for i in infos
    ]


def free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Free every slot ``run_id`` holds or waits for; the steps waiting behind it get them."""
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def release_finished_runs(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """Free the slots of every finished (or deleted) run that still holds or waits for one;
    run id -> the pools it was in."""
    stuck: dict[str, list[str]] = {}
    for state in pool_states(instance):
        for slot in state.stuck:
            pools = stuck.setdefault(slot.run_id, [])
            if state.pool not in pools:
                pools.append(state.pool)
    for run_id in stuck:
        free_slots(instance, run_id)
    return stuck


class WaitWatcher(threading.Thread):
    """While a backfill runs, say once when one of its runs waits for a pool slot (longer than
    ``patience`` seconds), naming who holds the pool, and again when it got one. Its own instance
    (``ref``), so it never shares a connection with the runs; it never fails the backfill."""

    def __init__(
        self,
        ref: InstanceRef,
        tags: Mapping[str, str],
        emit: Callable[[str], None],
        interval: float = 1.0,
        patience: float = 5.0,
    ) -> None:
        super().__init__(name="marketcov-pool-watcher", daemon=True)
        self._ref, self._tags, self._emit = ref, dict(tags), emit
        self._interval, self._patience = interval, patience
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)

    def run(self) -> None:
        reported: set[tuple[str, str]] = set()
        with dg.DagsterInstance.from_ref(self._ref) as instance:
            while not self._done.wait(self._interval):
                try:
                    reported = self._check(instance, reported)
                except Exception:  # a busy or restarting database: try again next time
                    continue

    def _check(self, instance: dg.DagsterInstance, reported: set[tuple[str, str]]) -> set[tuple[str, str]]:
        runs = instance.get_runs(filters=dg.RunsFilter(tags=self._tags, statuses=_IN_FLIGHT))
        waits = waits_of(pool_states(instance), [r.run_id for r in runs])
        now = datetime.now(UTC)
        long = {k: s for k, s in waits.items() if _waited(s, k[0], now) >= self._patience}
        for key, state in long.items():
            if key not in reported:
                self._emit(wait_line(key[0], state))
        for run_id, pool in sorted(reported - set(waits)):
            self._emit(f"run {run_id[:8]} got its slot in pool {pool}")
        return (reported & set(waits)) | set(long)


def _waited(state: PoolState, run_id: str, now: datetime) -> float:
    since = [s.since for s in state.waiting if s.run_id == run_id and s.since is not None]
    if not since:
        return 0.0
    return (now - min(since)).total_seconds()


_IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
