"""Resampled candles as assets: ``ohlcv/<interval>/<SYMBOL>`` built from the stored bars of their
source asset, on the same session partitions, re-derived automatically whenever a source
partition is written (declarative automation, evaluated by the daemon's automation sensor).

No ``from __future__ import annotations`` here: Dagster inspects the context annotations.
"""

from datetime import date

import dagster as dg

from marketcov_dagster.defs.assets import build_ohlcv_checks, tag_value
from marketcov_dagster.defs.io import BARS_IO_MANAGER_KEY
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.resample import derive_sessions, matches_source
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.verify import MATCHES_SOURCE

FOLLOW_SOURCE = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()).with_label("follow_source")
)
"""Dagster's eager condition for every session, not only the latest: a new or rewritten source
partition re-derives the same session once the source is no longer missing or in progress."""

DERIVED_AUTOMATION_SENSOR = "derived_automation"


def build_derived_automation_sensor(derived: list[dg.AssetsDefinition]) -> dg.AutomationConditionSensorDefinition:
    """Evaluates ``FOLLOW_SOURCE`` for the derived assets; on from the start (the daemon runs it)."""
    return dg.AutomationConditionSensorDefinition(
        DERIVED_AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*derived),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Re-derives resampled candles and indicators when the bars they come from are written.",
    )


def build_derived_asset(
    spec: AssetSpecification,
    partitions_def: dg.PartitionsDefinition,
    freshness_policy: dg.FreshnessPolicy | None = None,
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """A resampled asset and its checks (the three every OHLCV asset has, plus ``matches_source``)."""
    assert spec.derived_from is not None and spec.source_key_path is not None
    key = dg.AssetKey(list(spec.key_path))
    source_key = dg.AssetKey(list(spec.source_key_path))
    cal = get_calendar(spec.calendar)

    @dg.asset(
        key=key,
        deps=[source_key],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=f"ohlcv_{spec.interval}",
        pool=spec.pool,
        freshness_policy=freshness_policy,
        automation_condition=FOLLOW_SOURCE,
        io_manager_key=BARS_IO_MANAGER_KEY,
        description=(
            f"{spec.interval} candles of {spec.symbol} ({spec.asset_class}, {spec.calendar}), resampled from "
            f"{source_key.to_user_string()} and anchored at each session's open; one partition per session."
        ),
        tags={
            "asset_class": tag_value(spec.asset_class),
            "exchange": tag_value(spec.calendar),
            "interval": spec.interval,
            "derived_from": spec.derived_from,
        },
        metadata={
            "symbol": spec.symbol,
            "interval": spec.interval,
            "calendar": spec.calendar,
            "derived_from": spec.derived_from,
            "window_days": spec.window_days,
        },
        kinds={"sql", "pandas"},
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        results = derive_sessions(
            symbol=spec.symbol,
            interval=spec.interval,
            calendar=cal,
            sessions=[date.fromisoformat(k) for k in context.partition_keys],
            warehouse=warehouse.get(),
            run_id=context.run.run_id,
        )
        for r in results:
            context.add_asset_metadata(r.metadata(), partition_key=r.session.isoformat())
        context.log.info(
            f"{spec.symbol} {spec.interval}: {len(results)} partition(s), {sum(r.rows for r in results)} bars "
            f"from {sum(r.fetched_rows for r in results)} {spec.derived_from} bars"
        )
        return dg.MaterializeResult()

    extra = {MATCHES_SOURCE: lambda wh, days: matches_source(wh, cal, spec.symbol, spec.interval, days)}
    return _asset, build_ohlcv_checks(spec, partitions_def, extra)
