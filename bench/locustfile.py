"""Load for ``bench.bench_api``: each simulated client asks for the status summary and for a 90-day
window of minute-bar lineage, as dashboards and trading systems do before they run."""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

SYMBOLS = os.environ.get("BENCH_SYMBOLS", "S0000").split(",")
START, END = os.environ.get("BENCH_START", ""), os.environ.get("BENCH_END", "")


class Reader(HttpUser):
    wait_time = between(0.05, 0.2)

    @task
    def summary(self) -> None:
        self.client.get("/api/status/summary", name="/api/status/summary")

    @task
    def lineage(self) -> None:
        symbol = random.choice(SYMBOLS)
        self.client.get(
            f"/api/lineage?symbol={symbol}&interval=1m&start={START}&end={END}", name="/api/lineage (90 days of 1m)"
        )
