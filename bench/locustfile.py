"""Load for ``bench.bench_api``: each simulated client asks for the status summary and for a 90-day
window of minute-bar lineage, as dashboards and trading systems do before they run; with
``BENCH_ALL=1``, every read endpoint of the API in turn (light ones and heavy ones side by side)."""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

SYMBOLS = os.environ.get("BENCH_SYMBOLS", "S0000").split(",")
START, END = os.environ.get("BENCH_START", ""), os.environ.get("BENCH_END", "")
ALL = os.environ.get("BENCH_ALL") == "1"


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

    @task
    def the_rest(self) -> None:
        """One of every other read endpoint (only with ``BENCH_ALL``)."""
        if not ALL:
            return
        symbol = random.choice(SYMBOLS)
        path, name = random.choice(
            [
                ("/healthz", "/healthz"),
                ("/", "/ (the page)"),
                ("/metrics", "/metrics"),
                ("/api/coverage", "/api/coverage"),
                (f"/api/coverage/{symbol}/1m", "/api/coverage/{symbol}/1m"),
                (f"/api/bars/{symbol}/1d", "/api/bars/{symbol}/1d (3 years)"),
                (f"/api/bars/{symbol}/1d?adjust=all", "/api/bars/{symbol}/1d?adjust=all"),
                (f"/api/actions/{symbol}", "/api/actions/{symbol}"),
                ("/api/remediation", "/api/remediation"),
                ("/api/revisions", "/api/revisions"),
                ("/api/vendors", "/api/vendors"),
                ("/api/incidents", "/api/incidents"),
                ("/api/ops", "/api/ops"),
            ]
        )
        self.client.get(path, name=name)
