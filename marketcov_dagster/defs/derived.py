"""Resampled candles as assets: ``ohlcv/<interval>/<SYMBOL>`` built from the stored bars of their
source asset, on the same session partitions, re-derived automatically whenever a source
partition is written (declarative automation, evaluated by the daemon's automation sensor).
"""

from datetime import date
from typing import Any

import dagster as dg

from marketcov_dagster.defs.assets import asset_tags, ohlcv_checks
from marketcov_dagster.defs.groups import Member, RunScope
from marketcov_dagster.defs.io import BARS_IO_MANAGER_KEY
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.resample import derive_sessions, matches_source
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.verify import CHECK_NAMES, MATCHES_SOURCE

FOLLOW_SOURCE = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()).with_label("follow_source")
)
"""Dagster's eager condition for every session, not only the latest: a new or rewritten source
partition re-derives the same session once the source is no longer missing or in progress."""

DERIVED_AUTOMATION_SENSOR = "derived_automation"


def build_derived_automation_sensor(derived: list[dg.AssetKey]) -> dg.AutomationConditionSensorDefinition:
    """Evaluates ``FOLLOW_SOURCE`` for the derived assets; on from the start (the daemon runs it)."""
    return dg.AutomationConditionSensorDefinition(
        DERIVED_AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*derived),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Re-derives resampled candles and indicators when the bars they come from are written.",
    )


def source_mapping(interval: str, weekends: bool) -> dg.PartitionMapping | None:
    """Which source partitions a derived partition reads: its own session, or for a weekly bar
    the sessions of its week (the week's last session holds it: up to 4 sessions back, 6 on a
    calendar that trades on weekends), so a rewritten Monday re-derives its week."""
    if interval != "1w":
        return None
    return dg.TimeWindowPartitionMapping(start_offset=-6 if weekends else -4, end_offset=0)


def derived_member(
    spec: AssetSpecification,
    partitions_def: dg.PartitionsDefinition,
    freshness_policy: dg.FreshnessPolicy | None = None,
) -> Member:
    """A resampled asset and its checks (the three every OHLCV asset has, plus ``matches_source``)."""
    assert spec.derived_from is not None and spec.source_key_path is not None
    source_key = dg.AssetKey(list(spec.source_key_path))
    cal = get_calendar(spec.calendar)
    # a weekly bar needs its week's sessions from the window's first one on (the source's window is the same)
    window_first = (
        partitions_def.start.date() if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) else None
    )
    asset_spec = dg.AssetSpec(
        key=dg.AssetKey(list(spec.key_path)),
        deps=[dg.AssetDep(source_key, partition_mapping=source_mapping(spec.interval, cal.trades_on_weekends()))],
        partitions_def=partitions_def,
        group_name=f"ohlcv_{spec.interval}",
        freshness_policy=freshness_policy,
        automation_condition=FOLLOW_SOURCE,
        description=(
            f"{spec.interval} candles of {spec.symbol} ({spec.asset_class}, {spec.calendar}), resampled from "
            f"{source_key.to_user_string()} and anchored at each session's open; one partition per session."
            if spec.interval != "1w"
            else f"Weekly bars of {spec.symbol} ({spec.asset_class}, {spec.calendar}) from "
            f"{source_key.to_user_string()}: one per week (Monday to Sunday), stamped at its first session's open, "
            "held by the partition of its last session."
        ),
        tags=asset_tags(spec, derived_from=spec.derived_from),
        metadata={
            "symbol": spec.symbol,
            "interval": spec.interval,
            "calendar": spec.calendar,
            "derived_from": spec.derived_from,
            "window_days": spec.window_days,
        },
        kinds={"sql", "pandas"},
    ).with_io_manager_key(BARS_IO_MANAGER_KEY)

    def materialize(scope: RunScope, days: list[date]) -> dict[str, dict[str, Any]]:
        results = derive_sessions(
            symbol=spec.symbol,
            interval=spec.interval,
            calendar=cal,
            sessions=days,
            warehouse=scope.warehouse,
            run_id=scope.run_id,
            window_first=window_first,
        )
        scope.log.info(
            f"{spec.symbol} {spec.interval}: {len(results)} partition(s), {sum(r.rows for r in results)} bars "
            f"from {sum(r.fetched_rows for r in results)} {spec.derived_from} bars"
        )
        return {r.session.isoformat(): r.metadata() for r in results}

    extra = {MATCHES_SOURCE: lambda wh, days: matches_source(wh, cal, spec.symbol, spec.interval, days)}
    return Member(asset_spec, (*CHECK_NAMES, *extra), materialize, ohlcv_checks(spec, extra))
