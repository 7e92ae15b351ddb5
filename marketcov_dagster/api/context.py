"""What every request reads: the universe, the warehouse, the Dagster instance and the snapshot."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

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
    # one thread at a time talks to the Dagster instance (and its coverage cache file)
    instance_lock: threading.RLock = field(default_factory=threading.RLock)
    snapshots: SnapshotCache[Snapshot] = field(init=False)
    # answers computed from one snapshot, serialized once: (snapshot, endpoint, parameters) -> body
    _bodies: dict[tuple[object, ...], bytes] = field(default_factory=dict)

    def body(self, key: tuple[object, ...], build: Callable[[Snapshot], bytes]) -> bytes:
        """The serialized answer for ``key`` on the current snapshot, built once per snapshot."""
        snap = self.snapshots.get()
        full = (snap.taken_at, *key)  # when it was computed: unique per snapshot (an id() may be reused)
        cached = self._bodies.get(full)
        if cached is None:
            if len(self._bodies) > MAX_BODIES or any(k[0] != snap.taken_at for k in list(self._bodies)[:1]):
                self._bodies.clear()  # a new snapshot: the old answers are stale
            cached = self._bodies[full] = build(snap)
        return cached

    def __post_init__(self) -> None:
        self.ui_url = self.ui_url.rstrip("/")
        self.snapshots = SnapshotCache(self._take, self.ttl)

    def _take(self) -> Snapshot:
        with self.instance_lock:
            return take_snapshot(self.instance, self.warehouse, self.universe, self.ui_url)
