"""One consistent picture of every asset (coverage, freshness, incidents, last vendor), computed
at most once per ``ttl`` seconds however many clients ask: one request recomputes while the
others keep reading the previous picture. On a large universe, where one computation takes
seconds, the picture is kept at least ``COMPUTE_SHARE`` times as long as it took to compute, so
recomputing never takes more than a fifth of the server's time from the requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import dagster as dg

from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.reads import last_vendors
from marketcov_dagster.lib.status import status_report
from marketcov_dagster.lib.summary import summary_rows
from marketcov_dagster.lib.universe import AssetSpecification, Universe
from marketcov_dagster.lib.warehouse import Warehouse

T = TypeVar("T")
DEFAULT_TTL_SECONDS = 5.0
COMPUTE_SHARE = 4.0


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    specs: list[AssetSpecification]
    coverage: dict[str, AssetCoverage]  # by asset key
    status: dict[str, Any]  # ``status_report``: freshness, incidents, alerts, vendors
    rows: list[dict[str, Any]] = field(default_factory=list)  # the summary, one row per asset


def take_snapshot(instance: dg.DagsterInstance, warehouse: Warehouse, universe: Universe, ui_url: str) -> Snapshot:
    now = datetime.now(UTC)
    specs = universe.all_specs
    coverage = {c.asset_key: c for c in coverage_for(instance, specs, now, warehouse)}
    status = status_report(warehouse, specs, now)
    vendors = last_vendors(warehouse, [(s.symbol, s.interval) for s in specs if not s.indicators])
    return Snapshot(now, specs, coverage, status, summary_rows(specs, coverage, status, vendors, ui_url))


class SnapshotCache(Generic[T]):
    """``background``: once there is a value, a stale one is answered at once while a thread
    computes the next (no request waits for a recomputation, only the very first for the value)."""

    def __init__(self, compute: Callable[[], T], ttl: float = DEFAULT_TTL_SECONDS, background: bool = False) -> None:
        self._compute = compute
        self._ttl = ttl
        self._background = background
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = 0.0
        self._took = 0.0

    @property
    def ttl(self) -> float:
        return max(self._ttl, COMPUTE_SHARE * self._took)

    def _fresh(self) -> bool:
        return self._value is not None and time.monotonic() - self._at < self.ttl

    def get(self) -> T:
        value = self._value
        if value is not None and self._fresh():
            return value
        if value is not None and not self._lock.acquire(blocking=False):
            return value  # someone is recomputing: the previous picture is at most one TTL older
        if value is None:
            self._lock.acquire()
        elif self._background:  # the lock is ours: hand it to a thread that recomputes, answer now
            threading.Thread(target=self._refresh_and_release, daemon=True).start()
            return value
        try:
            self._refresh()
            assert self._value is not None
            return self._value
        finally:
            self._lock.release()

    def _refresh(self) -> None:
        if not self._fresh():
            t0 = time.monotonic()
            self._value = self._compute()
            self._at = time.monotonic()
            self._took = self._at - t0

    def _refresh_and_release(self) -> None:
        try:
            self._refresh()
        except Exception:  # the next request tries again; the previous value stays
            pass
        finally:
            self._lock.release()
