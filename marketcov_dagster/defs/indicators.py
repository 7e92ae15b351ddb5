"""Indicator assets: ``indicators/<interval>/<SYMBOL>`` computed with TA-Lib from the stored bars of
``ohlcv/<interval>/<SYMBOL>``, on the same session partitions, re-derived automatically when a
bars partition is written. Values live in the warehouse's ``indicator_values`` table; downstream
assets and ``marketcov bars --indicators`` read them from there.
"""

from datetime import date
from typing import Any

import dagster as dg

from marketcov_dagster.defs.assets import asset_tags
from marketcov_dagster.defs.derived import FOLLOW_SOURCE
from marketcov_dagster.defs.groups import Member, RunScope
from marketcov_dagster.defs.partitions import group_job_name
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.indicators import INDICATOR_CHECKS, derive_indicators, verify_indicators
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.verify import CheckOutcome
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster.lib.warehouse.schema import INDICATOR_COLUMNS


def indicator_job_name(calendar: str, interval: str) -> str:
    return group_job_name(calendar, interval).replace("ohlcv_", "indicators_", 1)


def indicator_member(spec: AssetSpecification, partitions_def: dg.PartitionsDefinition) -> Member:
    source_key = dg.AssetKey(list(spec.key_path))
    cal = get_calendar(spec.calendar)
    asset_spec = dg.AssetSpec(
        key=dg.AssetKey(list(spec.indicator_key_path)),
        deps=[source_key],
        partitions_def=partitions_def,
        group_name=f"indicators_{spec.interval}",
        automation_condition=FOLLOW_SOURCE,
        description=(
            f"Indicators of {spec.symbol}'s {spec.interval} bars ({', '.join(INDICATOR_COLUMNS)}), computed with "
            f"TA-Lib from {source_key.to_user_string()}; one partition per session, NULL while warming up."
        ),
        tags=asset_tags(spec),
        metadata={"symbol": spec.symbol, "interval": spec.interval, "calendar": spec.calendar},
        kinds={"sql", "pandas"},
    )

    def materialize(scope: RunScope, days: list[date]) -> dict[str, dict[str, Any]]:
        results = derive_indicators(
            symbol=spec.symbol, interval=spec.interval, calendar=cal, sessions=days, warehouse=scope.warehouse
        )
        warming = [r.session.isoformat() for r in results if r.warming_up]
        scope.log.info(
            f"{spec.symbol} {spec.interval} indicators: {len(results)} partition(s), "
            f"{sum(r.rows for r in results)} rows"
            + (f"; {len(warming)} partition(s) still warming up (from {warming[0]})" if warming else "")
        )
        return {r.session.isoformat(): r.metadata() for r in results}

    def evaluate(wh: Warehouse, days: list[date], run_id: str) -> dict[str, list[CheckOutcome]]:
        return verify_indicators(wh, cal, spec.symbol, spec.interval, days)

    return Member(asset_spec, INDICATOR_CHECKS, materialize, evaluate)
