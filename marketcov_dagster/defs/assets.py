"""The asset factory: one OHLCV asset and its partitioned checks per (symbol, interval).

No ``from __future__ import annotations`` here: Dagster inspects the context annotations.
"""

from collections.abc import Callable, Iterator, Mapping
from datetime import date

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not exported at top level
    AssetCheckEvaluationTargetMaterializationData,
)

from marketcov_dagster.defs.io import BARS_IO_MANAGER_KEY
from marketcov_dagster.defs.resources import VendorsResource, WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.crosscheck import daily_vs_minutes
from marketcov_dagster.lib.indicators import COVERS_SOURCE_BARS, MATCHES_FULL_RECOMPUTATION
from marketcov_dagster.lib.ingest import ingest_sessions
from marketcov_dagster.lib.universe import AssetSpecification, CrossIntervalSettings, VendorSettings
from marketcov_dagster.lib.verify import (
    BAR_COUNT_MATCHES_CALENDAR,
    BARS_ARE_VALID,
    CHECK_NAMES,
    CHECKSUM_MATCHES,
    DAILY_MATCHES_MINUTES,
    MATCHES_SOURCE,
    CheckOutcome,
    log_check_findings,
    verify_partitions,
)
from marketcov_dagster.lib.warehouse import Warehouse

CHECK_DESCRIPTIONS = {
    BARS_ARE_VALID: "OHLC consistent, volume >= 0, no NaN, no duplicate timestamps, every bar inside the session.",
    BAR_COUNT_MATCHES_CALENDAR: "Bar count matches the exchange calendar (holidays, early closes, DST); "
    "minute bars need at least min_completeness of the expected count.",
    CHECKSUM_MATCHES: "SHA-256 of the warehouse bars equals the checksum recorded when the partition was written.",
    DAILY_MATCHES_MINUTES: "The daily bar agrees with the session's minute bars: high >= every minute high, "
    "low <= every minute low, open, close and volume within the configured tolerances.",
    COVERS_SOURCE_BARS: "One indicator row for every stored bar of the session.",
    MATCHES_FULL_RECOMPUTATION: "Stored values equal a recomputation from the first stored bar "
    "(incremental = full, to 1e-9 of each indicator's scale; NULL while warming up).",
    MATCHES_SOURCE: "Each resampled bar equals, exactly, the candle of its source bars: open = first open, "
    "high = max, low = min, close = last close, volume = sum.",
}


def tag_value(value: str) -> str:
    """Dagster tag values allow ``[A-Za-z0-9_.-]``; '24/7' becomes '24_7'."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in value)


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The newest materialization of each partition, as check evaluations point at it; one query
    per page of records, newest first."""
    out: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    wanted = set(partitions)
    cursor = None
    while wanted - set(out):
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=sorted(wanted - set(out))),
            limit=1000,
            cursor=cursor,
        )
        for rec in page.records:
            if rec.partition_key in wanted and rec.partition_key not in out:
                out[rec.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=rec.storage_id, run_id=rec.run_id, timestamp=rec.timestamp
                )
        if not page.has_more:
            break
        cursor = page.cursor
    return out


def _sessions(keys: list[str]) -> list[date]:
    return [date.fromisoformat(k) for k in keys]


def build_ohlcv_asset(
    spec: AssetSpecification,
    partitions_def: dg.PartitionsDefinition,
    vendor_settings: Mapping[str, VendorSettings],
    freshness_policy: dg.FreshnessPolicy | None = None,
    cross: CrossIntervalSettings | None = None,
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """The asset and its per-partition checks; ``cross``: a daily asset whose symbol also has
    minute bars gets the cross-interval check too."""
    key = dg.AssetKey(list(spec.key_path))
    cal = get_calendar(spec.calendar)

    @dg.asset(
        key=key,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=f"ohlcv_{spec.interval}",
        pool=spec.pool,
        freshness_policy=freshness_policy,
        io_manager_key=BARS_IO_MANAGER_KEY,  # downstream assets load bars as DataFrames
        description=(
            f"{spec.interval} OHLCV bars of {spec.symbol} ({spec.asset_class}, {spec.calendar}); "
            f"one partition per session, fetched from {' -> '.join(spec.vendors)}."
        ),
        tags={
            "asset_class": tag_value(spec.asset_class),
            "exchange": tag_value(spec.calendar),
            "vendor_pool": tag_value(spec.pool),
            "interval": spec.interval,
        },
        metadata={
            "symbol": spec.symbol,
            "interval": spec.interval,
            "calendar": spec.calendar,
            "vendors": list(spec.vendors),
            "window_days": spec.window_days,
        },
        kinds={"sql"},
    )
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, vendors: VendorsResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        wh = warehouse.get()
        results = ingest_sessions(
            symbol=spec.symbol,
            interval=spec.interval,
            calendar=cal,
            sessions=_sessions(list(context.partition_keys)),
            vendors=vendors.chain(spec.vendors, cal, vendor_settings, wh),
            warehouse=wh,
            run_id=context.run.run_id,
            min_completeness=spec.min_completeness,
            log=context.log.warning,
        )
        for r in results:
            context.add_asset_metadata(r.metadata(), partition_key=r.session.isoformat())
        rows = sum(r.rows for r in results)
        served = sorted({r.vendor for r in results})
        gaps = [r.session.isoformat() for r in results if r.gap]
        context.log.info(
            f"{spec.symbol} {spec.interval}: {len(results)} partition(s), {rows} bars, served by {', '.join(served)}"
            + (f"; gaps in {gaps}" if gaps else "")
        )
        return dg.MaterializeResult()

    extra: dict[str, ExtraCheck] = {}
    if cross is not None:
        extra[DAILY_MATCHES_MINUTES] = lambda wh, days: daily_vs_minutes(wh, cal, spec.symbol, days, cross)
    return _asset, build_ohlcv_checks(spec, partitions_def, extra)


ExtraCheck = Callable[[Warehouse, list[date]], dict[str, CheckOutcome]]
"""A check beyond the three every OHLCV asset has: outcomes per written session (ISO date)."""

Evaluate = Callable[[Warehouse, list[date], str], dict[str, list[CheckOutcome]]]
"""Checks of a run of sessions (warehouse, sessions, run id): the outcomes of each written session
(ISO date), one per check in order; sessions never written are left out."""


def build_ohlcv_checks(
    spec: AssetSpecification, partitions_def: dg.PartitionsDefinition, extra: Mapping[str, ExtraCheck]
) -> dg.AssetChecksDefinition:
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
            for k, outcome in run_extra(wh, _sessions(list(outcomes))).items():
                outcomes[k].append(outcome)
        log_check_findings(wh, spec.symbol, spec.interval, outcomes, run_id)
        return outcomes

    key = dg.AssetKey(list(spec.key_path))
    return build_partition_checks(
        key, partitions_def, (*CHECK_NAMES, *extra), evaluate, f"{spec.symbol} {spec.interval}"
    )


def build_partition_checks(
    key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    check_names: tuple[str, ...],
    evaluate: Evaluate,
    label: str,
) -> dg.AssetChecksDefinition:
    """Per-partition checks of one asset: a single-partition run yields each result; a range run
    records each partition's result and yields one summary per check."""
    check_specs = [
        dg.AssetCheckSpec(name, asset=key, partitions_def=partitions_def, description=CHECK_DESCRIPTIONS[name])
        for name in check_names
    ]

    # can_subset: a partition never written yields no result (nothing to check), not a failure
    @dg.multi_asset_check(specs=check_specs, name=f"{key.to_python_identifier()}_checks", can_subset=True)
    def _checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        keys = list(context.partition_keys)
        outcomes = evaluate(warehouse.get(), _sessions(keys), context.run.run_id)
        unwritten = [k for k in keys if k not in outcomes]
        if unwritten:
            # nothing to check is not a failed check: no result, no alert, no remediation entry
            context.log.info(f"{label}: {len(unwritten)} partition(s) not materialized")
        if not outcomes:
            return
        if context.has_partition_key:
            for o in outcomes[keys[0]]:
                yield dg.AssetCheckResult(
                    asset_key=key,
                    check_name=o.name,
                    passed=o.passed,
                    description=o.description,
                    metadata=o.metadata,
                    severity=dg.AssetCheckSeverity(o.severity),
                )
            return
        # A range run stores yielded results without a partition, so record each partition's
        # result explicitly, then yield one summary per check that fails if any partition failed.
        # Each evaluation names the partition's materialization it checked: without it Dagster
        # counts the result as out of date and the UI's check partitions view stays empty.
        targets = latest_materializations(context.instance, key, list(outcomes))
        for k, per_check in outcomes.items():
            for o in per_check:
                # log_event accepts check evaluations at runtime; its annotation lags behind
                context.op_execution_context.log_event(
                    dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                        asset_key=key,
                        check_name=o.name,
                        passed=o.passed,
                        partition=k,
                        description=o.description,
                        metadata=o.metadata,
                        severity=dg.AssetCheckSeverity(o.severity),
                        target_materialization_data=targets.get(k),
                    )
                )
        for i, name in enumerate(check_names):
            failed = [k for k, per_check in outcomes.items() if not per_check[i].passed]
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=not failed,
                severity=dg.AssetCheckSeverity(next(iter(outcomes.values()))[i].severity),
                description=f"{len(outcomes) - len(failed)}/{len(outcomes)} written partitions passed"
                + (f"; {len(unwritten)} not materialized" if unwritten else ""),
                metadata={
                    "partitions": len(outcomes),
                    "failed_partitions": failed[:50],
                    "not_materialized": len(unwritten),
                },
            )

    return _checks
