"""``/metrics``: the snapshot in Prometheus text format, labelled per asset and vendor, so
Grafana dashboards and Alertmanager rules work without glue."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketcov_dagster.api.context import ApiContext
from marketcov_dagster.lib.reads import remediation_counts
from marketcov_dagster.lib.summary import summarize
from marketcov_dagster.lib.warehouse import VENDOR_STATES

ASSET_LABELS = ["asset_key", "kind", "symbol", "interval", "asset_class"]


class SnapshotCollector(Collector):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        snap = self.ctx.snapshots.get()
        per_asset = {
            "coverage_pct": ("Share of the window's closed sessions stored and complete, in %", "coverage_pct"),
            "missing_sessions": ("Closed sessions of the window not stored", "missing_count"),
            "partial_sessions": ("Stored sessions below min_completeness", "partial_count"),
            "lag_minutes": ("Minutes the newest ended bar trails the calendar (absent: no data)", "lag_minutes"),
            "stale": ("1 when the lag exceeds the asset's freshness threshold", "stale"),
            "no_data": ("1 when nothing is stored for the asset yet (not built yet)", "no_data"),
            "gapped": ("1 when a session after its first stored one is missing or partial", "gapped"),
            "open_incident": ("1 while a freshness incident is open", "open_incident"),
        }
        for name, (doc, field) in per_asset.items():
            g = GaugeMetricFamily(f"marketcov_{name}", doc, labels=ASSET_LABELS)
            for r in snap.rows:
                value = r[field]
                if value is None and field != "open_incident":
                    continue
                if field == "open_incident":
                    value = 1 if value else 0
                g.add_metric([r[k] for k in ASSET_LABELS], float(value))
            yield g
        open_total = GaugeMetricFamily("marketcov_open_incidents", "Freshness incidents open now")
        open_total.add_metric([], float(len(snap.status["open_incidents"])))
        yield open_total
        sla = GaugeMetricFamily("marketcov_sla_ok", "1 when the service level is met", labels=["name"])
        for v in summarize(snap.rows, snap.coverage, self.ctx.universe.config.sla, "")["sla"]:
            sla.add_metric([v["name"]], 1.0 if v["ok"] else 0.0)
        yield sla
        state = GaugeMetricFamily(
            "marketcov_vendor_state", "1 for the vendor's current state", labels=["vendor", "state"]
        )
        calls = CounterMetricFamily("marketcov_vendor_calls", "Real calls made to the vendor", labels=["vendor"])
        fails = CounterMetricFamily("marketcov_vendor_failures", "Calls that failed", labels=["vendor"])
        limited = CounterMetricFamily("marketcov_vendor_rate_limited", "Calls refused for rate", labels=["vendor"])
        for v in snap.status["vendors"]:
            for s in VENDOR_STATES:
                state.add_metric([v["vendor"], s], 1.0 if v["state"] == s else 0.0)
            calls.add_metric([v["vendor"]], float(v["calls"]))
            fails.add_metric([v["vendor"]], float(v["failures"]))
            limited.add_metric([v["vendor"]], float(v["rate_limited"]))
        yield from (state, calls, fails, limited)
        rem = GaugeMetricFamily("marketcov_remediation_entries", "Remediation log entries", labels=["kind", "interval"])
        for (kind, interval), n in sorted(remediation_counts(self.ctx.warehouse).items()):
            rem.add_metric([kind, interval], float(n))
        yield rem
        # CounterMetricFamily appends _total: marketcov_revisions_total
        revised = CounterMetricFamily(
            "marketcov_revisions", "Stored partitions a re-fetch revised", labels=["interval"]
        )
        for interval, n in sorted(self.ctx.warehouse.revision_counts().items()):
            revised.add_metric([interval], float(n))
        yield revised
        taken = GaugeMetricFamily("marketcov_snapshot_timestamp_seconds", "When these figures were computed")
        taken.add_metric([], snap.taken_at.timestamp())
        yield taken


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def registry_for(ctx: ApiContext) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(ctx))
    return registry
