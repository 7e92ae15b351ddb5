"""What every request reads: the universe, the warehouse, the Dagster instance and the snapshot."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

from marketcov_dagster.api.health import HealthMonitor
from marketcov_dagster.api.ops import live_state, run_history
from marketcov_dagster.api.snapshot import DEFAULT_TTL_SECONDS, Snapshot, SnapshotCache, take_snapshot
from marketcov_dagster.lib.universe import Universe
from marketcov_dagster.lib.warehouse import Warehouse

DEFAULT_UI_URL = "http://127.0.0.1:3000"
MAX_BODIES = 256


@dataclass
class ApiContext:
    universe: Universe
    warehouse: Warehouse
    instance: dg.DagsterInstance
    ui_url: str = DEFAULT_UI_URL
    token: str | None = None  # bearer token every request must carry, when set
    ttl: float = DEFAULT_TTL_SECONDS
    damage: str | None = None  # what is wrong with the warehouse file, found at start
    # one thread at a time talks to the Dagster instance (and its coverage cache file)
    instance_lock: threading.RLock = field(default_factory=threading.RLock)
    snapshots: SnapshotCache[Snapshot] = field(init=False)
    health: HealthMonitor = field(init=False)
    # answers computed from one snapshot, serialized once: (endpoint, parameters) -> body
    _bodies: dict[tuple[object, ...], bytes] = field(default_factory=dict)
    _bodies_of: datetime | None = None  # the snapshot (its computation time) those answers come from
    _run_history: dict[int, SnapshotCache[dict[str, Any]]] = field(default_factory=dict)  # by look-back hours
    _ops_lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, key: tuple[object, ...], build: Callable[[Snapshot], bytes]) -> bytes:
        """The serialized answer for ``key`` on the current snapshot, built once per snapshot."""
        snap = self.snapshots.get()
        if self._bodies_of is None or snap.taken_at > self._bodies_of or len(self._bodies) > MAX_BODIES:
            self._bodies = {}  # a newer snapshot (its computation time): the old answers are stale
            self._bodies_of = snap.taken_at
        elif snap.taken_at < self._bodies_of:
            return build(snap)  # a thread still on the previous snapshot: answer, cache nothing
        bodies = self._bodies
        cached = bodies.get(key)
        if cached is None:
            cached = bodies[key] = build(snap)
        return cached

    def __post_init__(self) -> None:
        self.ui_url = self.ui_url.rstrip("/")
        self.snapshots = SnapshotCache(self._take, self.ttl)
        self.health = HealthMonitor(self._probe_warehouse, self._probe_instance, self.damage)

    def _probe_warehouse(self) -> None:
        with self.warehouse.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _probe_instance(self) -> None:
        with self.instance_lock:
            self.instance.get_runs(limit=1)

    def ops(self, hours: int) -> dict[str, Any]:
        """``/api/ops``: the run history's figures as of at most a TTL (and one computation) ago,
        recomputed in the background, so no request waits for them but the first; the queue,
        daemons and pools live."""
        with self._ops_lock:
            cache = self._run_history.get(hours)
            if cache is None:
                cache = self._run_history[hours] = SnapshotCache(
                    lambda: self._history(hours), self.ttl, background=True
                )
        # run storage queries only (no coverage cache file): safe beside other threads, as in
        # Dagster's own webserver, so they never queue behind a snapshot or each other
        return {**cache.get(), **live_state(self.instance)}

    def _history(self, hours: int) -> dict[str, Any]:
        return run_history(self.instance, hours, self.ui_url, datetime.now(UTC))

    def _take(self) -> Snapshot:
        with self.instance_lock:
            return take_snapshot(self.instance, self.warehouse, self.universe, self.ui_url)
