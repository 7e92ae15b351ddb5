"""``/healthz`` from memory: a thread probes the warehouse and the Dagster instance every few
seconds and keeps the answer, so a probe never waits behind a query or a busy database, and a
damaged warehouse found at start is reported with its reason until the service is restarted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

PROBE_EVERY_SECONDS = 5.0


class HealthMonitor:
    def __init__(
        self,
        probe_warehouse: Callable[[], None],
        probe_instance: Callable[[], None],
        damage: str | None = None,
        every: float = PROBE_EVERY_SECONDS,
    ) -> None:
        self._probes = {"warehouse": probe_warehouse, "instance": probe_instance}
        self._damage = damage
        self._every = every
        self._state: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.probe()

    @property
    def damage(self) -> str | None:
        return self._damage

    def probe(self) -> None:
        state = {}
        for name, probe in self._probes.items():
            if name == "warehouse" and self._damage:
                state[name] = f"damaged: {self._damage}"
                continue
            try:
                probe()
                state[name] = "ok"
            except Exception as e:  # any failure means unhealthy; the type names no secret
                state[name] = f"unreachable: {type(e).__name__}"
        self._state = state

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="marketcov-health", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.probe()

    def answer(self) -> tuple[dict[str, Any], int]:
        state = dict(self._state)
        ok = all(v == "ok" for v in state.values())
        return {"ok": ok, **state}, 200 if ok else 503
