"""Coverage from Dagster's materialization history.

Presence comes from ``get_materialized_partitions`` (cheap); row counts come from each
partition's materialization metadata, read incrementally by event-log storage id into a
``MetadataCache`` beside the instance, so no call re-scans the whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from marketcov_dagster.defs.retention import expired_so_far
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.coverage import AssetCoverage, asset_coverage
from marketcov_dagster.lib.metacache import MetadataCache
from marketcov_dagster.lib.universe import AssetSpecification

PAGE = 1000


def cache_for(instance: dg.DagsterInstance) -> MetadataCache:
    return MetadataCache(Path(instance.root_directory) / "marketcov_coverage_cache.sqlite")


def _rows_of(record: dg.EventLogRecord) -> int:
    mat = record.asset_materialization
    value = mat.metadata.get("rows") if mat else None
    return int(value.value) if value is not None and value.value is not None else 0  # type: ignore[arg-type]


def _entries(records: Sequence[dg.EventLogRecord]) -> list[tuple[str, int, int]]:
    return [(r.partition_key, r.storage_id, _rows_of(r)) for r in records if r.partition_key]


def refresh_rows(
    instance: dg.DagsterInstance, cache: MetadataCache, asset_key: dg.AssetKey, present: set[str]
) -> dict[str, int]:
    """Bring the cache up to date for one asset and return its rows per partition."""
    k = asset_key.to_user_string()
    cursor = cache.cursor(k)
    while True:
        res = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=cursor),
            limit=PAGE,
            ascending=True,
        )
        if not res.records:
            break
        cursor = max(r.storage_id for r in res.records)
        cache.update(k, _entries(res.records), cursor)
        if not res.has_more:
            break
    rows = cache.rows(k)
    unknown = sorted(present - rows.keys())
    if unknown:
        # partitions present in Dagster but not cached (e.g. a cache made against another
        # instance): fetch exactly those, never the whole history
        for i in range(0, len(unknown), PAGE):
            res = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=unknown[i : i + PAGE]),
                limit=PAGE * 10,
            )
            cache.update(k, _entries(res.records), None)
        rows = cache.rows(k)
    return rows


def coverage_for(
    instance: dg.DagsterInstance, specs: Sequence[AssetSpecification], now: datetime | None = None
) -> list[AssetCoverage]:
    now = now or datetime.now(UTC)
    cache = cache_for(instance)
    try:
        out = []
        for spec in specs:
            key = dg.AssetKey(list(spec.key_path))
            present = set(instance.get_materialized_partitions(key))
            rows = refresh_rows(instance, cache, key, present)
            expired = expired_so_far(instance, key)
            out.append(asset_coverage(spec, get_calendar(spec.calendar), present, rows, now, expired))
        return out
    finally:
        cache.close()
