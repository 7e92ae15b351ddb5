"""The members of the OHLCV groups: one asset per (symbol, interval) fetched from vendors, with the
per-partition checks every OHLCV asset has (``defs.groups`` builds one op per group of them).
"""

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import dagster as dg

from marketcov_dagster.defs.groups import Evaluate, Member, RunScope
from marketcov_dagster.defs.io import BARS_IO_MANAGER_KEY
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.crosscheck import daily_vs_minutes
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.prices.held import NO_PENDING_REVISION, pending_revision_check
from marketcov_dagster.lib.prices.jumps import JUMPS_EXPLAINED, jumps_explained
from marketcov_dagster.lib.universe import AssetSpecification, CrossIntervalSettings, VendorSettings
from marketcov_dagster.lib.verify import (
    CHECK_NAMES,
    DAILY_MATCHES_MINUTES,
    CheckOutcome,
    log_check_findings,
    record_verdicts,
    verify_partitions,
)
from marketcov_dagster.lib.warehouse import Warehouse


def tag_value(value: str) -> str:
    """Dagster tag values allow ``[A-Za-z0-9_.-]``; '24/7' becomes '24_7'."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in value)


def asset_tags(spec: AssetSpecification, **extra: str) -> dict[str, str]:
    return {
        "asset_class": tag_value(spec.asset_class),
        "exchange": tag_value(spec.calendar),
        "interval": spec.interval,
        **extra,
    }


def ohlcv_member(
    spec: AssetSpecification,
    partitions_def: dg.PartitionsDefinition,
    vendor_settings: Mapping[str, VendorSettings],
    freshness_policy: dg.FreshnessPolicy | None = None,
    cross: CrossIntervalSettings | None = None,
) -> Member:
    """A fetched asset and its checks; ``cross``: a daily asset whose symbol also has minute bars
    gets the cross-interval check too."""
    cal = get_calendar(spec.calendar)
    asset_spec = dg.AssetSpec(
        key=dg.AssetKey(list(spec.key_path)),
        partitions_def=partitions_def,
        group_name=f"ohlcv_{spec.interval}",
        freshness_policy=freshness_policy,
        description=(
            f"{spec.interval} OHLCV bars of {spec.symbol} ({spec.asset_class}, {spec.calendar}); "
            f"one partition per session, fetched from {' -> '.join(spec.vendors)}."
        ),
        tags=asset_tags(spec, vendor_pool=tag_value(spec.pool)),
        metadata={
            "symbol": spec.symbol,
            "interval": spec.interval,
            "calendar": spec.calendar,
            "vendors": list(spec.vendors),
            "window_days": spec.window_days,
        },
        kinds={"sql"},
    ).with_io_manager_key(BARS_IO_MANAGER_KEY)  # downstream assets load bars as DataFrames

    def materialize(scope: RunScope, days: list[date]) -> dict[str, dict[str, Any]]:
        results = ingest_sessions(
            symbol=spec.symbol,
            interval=spec.interval,
            calendar=cal,
            sessions=days,
            vendors=scope.vendors.chain(spec.vendors, cal, vendor_settings, scope.warehouse),
            warehouse=scope.warehouse,
            run_id=scope.run_id,
            min_completeness=spec.min_completeness,
            log=scope.log.warning,
            on_revision=spec.on_revision,
        )
        rows = sum(r.rows for r in results)
        served = sorted({r.vendor for r in results})
        gaps = [r.session.isoformat() for r in results if r.gap]
        scope.log.info(
            f"{spec.symbol} {spec.interval}: {len(results)} partition(s), {rows} bars, served by {', '.join(served)}"
            + (f"; gaps in {gaps}" if gaps else "")
        )
        return {r.session.isoformat(): r.metadata() for r in results}

    extra: dict[str, ExtraCheck] = {}
    if cross is not None:
        extra[DAILY_MATCHES_MINUTES] = lambda wh, days: daily_vs_minutes(wh, cal, spec.symbol, days, cross)
    if spec.interval == "1d" and not cal.always_open:  # crypto has no corporate actions
        extra[JUMPS_EXPLAINED] = lambda wh, days: jumps_explained(wh, cal, spec.symbol, days)
    if spec.on_revision == "hold":
        extra[NO_PENDING_REVISION] = lambda wh, days: pending_revision_check(wh, spec.symbol, spec.interval, days)
    return Member(asset_spec, (*CHECK_NAMES, *extra), materialize, ohlcv_checks(spec, extra))


ExtraCheck = Callable[[Warehouse, list[date]], dict[str, CheckOutcome]]
"""A check beyond the three every OHLCV asset has: outcomes per written session (ISO date)."""


def ohlcv_checks(spec: AssetSpecification, extra: Mapping[str, ExtraCheck]) -> Evaluate:
    """The per-partition checks of one OHLCV asset: the three every asset has, then ``extra``."""
    cal = get_calendar(spec.calendar)

    def evaluate(wh: Warehouse, days: list[date], run_id: str) -> dict[str, list[CheckOutcome]]:
        outcomes = verify_partitions(
            warehouse=wh,
            calendar=cal,
            symbol=spec.symbol,
            interval=spec.interval,
            sessions=days,
            min_completeness=spec.min_completeness,
        )
        for run_extra in extra.values():
            for k, outcome in run_extra(wh, [date.fromisoformat(k) for k in outcomes]).items():
                outcomes[k].append(outcome)
        log_check_findings(wh, spec.symbol, spec.interval, outcomes, run_id)
        record_verdicts(wh, spec.symbol, spec.interval, outcomes, run_id)
        return outcomes

    return evaluate
