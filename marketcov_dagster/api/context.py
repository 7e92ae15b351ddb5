"""What every request reads: the universe, the warehouse, the Dagster instance and the snapshot."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import dagster as dg

from marketcov_dagster.api.snapshot import DEFAULT_TTL_SECONDS, Snapshot, SnapshotCache, take_snapshot
from marketcov_dagster.lib.universe import Universe
from marketcov_dagster.lib.warehouse import Warehouse

DEFAULT_UI_URL = "http://127.0.0.1:3000"


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

    def __post_init__(self) -> None:
        self.ui_url = self.ui_url.rstrip("/")
        self.snapshots = SnapshotCache(self._take, self.ttl)

    def _take(self) -> Snapshot:
        with self.instance_lock:
            return take_snapshot(self.instance, self.warehouse, self.universe, self.ui_url)
