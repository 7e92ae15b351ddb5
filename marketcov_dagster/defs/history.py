"""Coverage from Dagster's materialization history.

One ``get_asset_records`` call gives every asset's latest materialization storage id and latest
observation. Row counts per partition come from the materialization metadata, read incrementally
by storage id into a ``MetadataCache`` beside the instance, and only for assets that have new
events since the cache's cursor; every partition that was ever materialized is in the cache, so an
unchanged asset costs no Dagster query at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.coverage import AssetCoverage, asset_coverage
from marketcov_dagster.lib.metacache import SETTLE_SECONDS, MetadataCache
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.verify import CHECKSUM_MATCHES
from marketcov_dagster.lib.warehouse import Warehouse

PAGE = 1000


def cache_for(instance: dg.DagsterInstance) -> MetadataCache:
    """The cache of this instance's storage: its name carries the run storage's id, so pointing
    DAGSTER_HOME at another database never reuses storage ids that mean something else."""
    getter = getattr(instance.run_storage, "get_run_storage_id", None)  # SQL storages (SQLite, PostgreSQL)
    storage_id = str(getter())[:12] if getter else "default"
    return MetadataCache(Path(instance.root_directory) / f"marketcov_coverage_cache_{storage_id}.sqlite")


def _rows_of(record: dg.EventLogRecord) -> int:
    mat = record.asset_materialization
    value = mat.metadata.get("rows") if mat else None
    return int(value.value) if value is not None and value.value is not None else 0  # type: ignore[arg-type]


def refresh_rows(
    instance: dg.DagsterInstance, cache: MetadataCache, asset_key: dg.AssetKey, latest_storage_id: int | None
) -> dict[str, int]:
    """Rows per materialized partition of one asset, reading only events the cache may not have
    seen: those after its settled id (see ``MetadataCache``)."""
    if latest_storage_id is None:
        return {}
    k = asset_key.to_user_string()
    newest, settled = cache.marks(k)
    if newest is not None and newest >= latest_storage_id and settled == newest:
        return cache.rows(k)  # nothing new, and everything read has settled
    old_enough = time.time() - SETTLE_SECONDS
    after, moving = settled, True
    while True:
        res = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=after), limit=PAGE, ascending=True
        )
        for r in res.records:  # ascending: settled follows the old events up to the first recent one
            moving = moving and r.timestamp <= old_enough
            settled = r.storage_id if moving else settled
        if res.records:
            after = res.records[-1].storage_id
        entries = [(r.partition_key, r.storage_id, _rows_of(r)) for r in res.records if r.partition_key]
        cache.update(k, entries, max(after or 0, newest or 0), settled)
        if not res.has_more:
            break
    return cache.rows(k)


def coverage_for(
    instance: dg.DagsterInstance,
    specs: Sequence[AssetSpecification],
    now: datetime | None = None,
    warehouse: Warehouse | None = None,
) -> list[AssetCoverage]:
    """Coverage from the materialization history; with ``warehouse``, reconciled with it: a
    materialized partition with no write left in the warehouse (its bars gone), or whose stored
    bars last failed ``checksum_matches`` (damaged), is ``lost``, and missing, never covered. One
    count query for all assets; the sessions of an asset are read only where the counts disagree."""
    now = now or datetime.now(UTC)
    keys = [dg.AssetKey(list(spec.key_path)) for spec in specs]
    entries = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(keys)}
    counts: dict[tuple[str, str], dict[tuple[str, str], int]] = {}  # per window: (symbol, interval) -> sessions
    cache = cache_for(instance)
    damaged = warehouse.failing_partitions() if warehouse is not None else {}
    try:
        out = []
        for spec, key in zip(specs, keys, strict=True):
            entry = entries.get(key)
            rows = refresh_rows(instance, cache, key, entry.last_materialization_storage_id if entry else None)
            cov = asset_coverage(spec, get_calendar(spec.calendar), set(rows), rows, now)
            if warehouse is not None and not spec.indicators and cov.first_expected and cov.last_expected:
                window = (cov.first_expected, cov.last_expected)
                if window not in counts:  # one query per distinct window (a few), not per asset
                    counts[window] = warehouse.lineage_session_counts(*window)
                held = [p for p in rows if window[0] <= p <= window[1]]
                lost = set(damaged.get((spec.symbol, spec.interval), {}).get(CHECKSUM_MATCHES, [])) & set(held)
                if len(held) > counts[window].get((spec.symbol, spec.interval), 0):
                    lost |= set(held) - warehouse.written_sessions(spec.symbol, spec.interval, *window)
                if lost:
                    cov = asset_coverage(spec, get_calendar(spec.calendar), set(rows), rows, now, lost)
            out.append(cov)
        return out
    finally:
        cache.close()


def rows_for(instance: dg.DagsterInstance, spec: AssetSpecification) -> dict[str, int]:
    """Rows per materialized partition of one asset, ever (the window does not limit it)."""
    key = dg.AssetKey(list(spec.key_path))
    records = instance.get_asset_records([key])
    latest = records[0].asset_entry.last_materialization_storage_id if records else None
    cache = cache_for(instance)
    try:
        return refresh_rows(instance, cache, key, latest)
    finally:
        cache.close()
