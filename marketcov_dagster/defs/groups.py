"""One Dagster op per group of like assets: a ``multi_asset`` (``can_subset``) whose step
materializes each selected asset of the group in turn and evaluates that asset's checks right
after it, in the same step.

Why one op per group rather than per asset: the code location then builds a handful of ops
instead of two per asset (an asset op and a check op), which is what its load time is made of at
thousands of assets (BENCHMARKS.md section 5), and a run of a group is one step (one process)
instead of one per asset. Why the checks live in the same op: a failure of one asset (one
symbol's vendor down) must not skip the checks of the others, as a separate check step
downstream of a failed step would be; here every other asset is still materialized and checked,
and the step fails afterwards with the asset's own error.

No ``from __future__ import annotations`` here: Dagster inspects the context annotations.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not exported at top level
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster_shared.error import SerializableErrorInfo

from marketcov_dagster.defs.resources import VendorsResource
from marketcov_dagster.lib.indicators import COVERS_SOURCE_BARS, MATCHES_FULL_RECOMPUTATION
from marketcov_dagster.lib.prices.held import NO_PENDING_REVISION
from marketcov_dagster.lib.prices.jumps import JUMPS_EXPLAINED
from marketcov_dagster.lib.verify import (
    BAR_COUNT_MATCHES_CALENDAR,
    BARS_ARE_VALID,
    CHECKSUM_MATCHES,
    DAILY_MATCHES_MINUTES,
    MATCHES_SOURCE,
    CheckOutcome,
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
    JUMPS_EXPLAINED: "Open and close against the previous close: no move matching a split ratio, and none over 40 %, "
    "that the corporate-actions ledger does not explain; no ledger split without its move in raw prices.",
    NO_PENDING_REVISION: "on_revision: hold only: the vendor serves no other bars than the stored ones, or the "
    "revision was accepted or rejected (marketcov revisions accept|reject).",
    MATCHES_SOURCE: "Each resampled bar equals, exactly, the candle of its source bars: open = first open, "
    "high = max, low = min, close = last close, volume = sum; and the source is unchanged since it was built.",
}

Materialize = Callable[["RunScope", list[date]], Mapping[str, Mapping[str, Any]]]
"""Write the sessions of one asset; returns the metadata of each written partition (ISO date)."""

Evaluate = Callable[[Warehouse, list[date], str], dict[str, list[CheckOutcome]]]
"""Checks of a run of sessions (warehouse, sessions, run id): the outcomes of each written session
(ISO date), one per check in order; sessions never written are left out."""


@dataclass(frozen=True)
class RunScope:
    """What a member's ``materialize`` gets from the step it runs in."""

    warehouse: Warehouse
    vendors: VendorsResource
    run_id: str
    log: Any  # Dagster's log manager (info/warning/error)


@dataclass(frozen=True)
class Member:
    """One asset of a group: its spec, how it is written, and its checks."""

    spec: dg.AssetSpec
    check_names: tuple[str, ...]
    materialize: Materialize
    evaluate: Evaluate

    @property
    def key(self) -> dg.AssetKey:
        return self.spec.key


class AssetStepError(Exception):
    """Assets of a group's step failed: each one's key and error (the first one's is the cause)."""


def step_error(error: SerializableErrorInfo) -> str:
    """The op's own error of a failed step, in one line, without Dagster's wrapper around it: for
    a group step, the assets that failed and why (``ohlcv/1d/AAPL: VendorError: …``)."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    first = next((line for line in error.message.strip().splitlines() if line.strip()), error.cls_name or "error")
    qualified, sep, rest = first.partition(": ")
    if not sep or " " in qualified:  # not "Class: message"
        return first
    if error.cls_name == AssetStepError.__name__:  # our wrapper: only what failed, and why
        return rest
    return f"{qualified.rsplit('.', 1)[-1]}: {rest}"  # "pkg.mod.VendorError: …" -> "VendorError: …"


def build_group(
    name: str,
    members: Sequence[Member],
    partitions_def: dg.PartitionsDefinition,
    pool: str | None,
    description: str,
) -> dg.AssetsDefinition:
    """The ``multi_asset`` of ``members`` (one step materializes and checks the selected ones)."""
    check_specs = [
        dg.AssetCheckSpec(n, asset=m.key, partitions_def=partitions_def, description=CHECK_DESCRIPTIONS[n])
        for m in members
        for n in m.check_names
    ]

    @dg.multi_asset(
        name=name,
        specs=[m.spec for m in members],
        check_specs=check_specs,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
        pool=pool,
        description=description,
        required_resource_keys={"warehouse", "vendors"},
    )
    def _group(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:  # type: ignore[type-arg]
        wh = context.resources.warehouse.get()
        scope = RunScope(wh, context.resources.vendors, context.run.run_id, context.log)
        keys = list(context.partition_keys)
        days = [date.fromisoformat(k) for k in keys]
        selected_checks = set(context.selected_asset_check_keys)
        failures: list[tuple[Member, Exception]] = []
        for m in members:
            if m.key in context.selected_asset_keys:
                try:
                    written = m.materialize(scope, days)
                except Exception as e:  # the others still run and are checked; the step fails after
                    context.log.error(f"{m.key.to_user_string()}: {type(e).__name__}: {e}")
                    failures.append((m, e))
                    continue
                for k, metadata in written.items():
                    context.add_asset_metadata(dict(metadata), asset_key=m.key, partition_key=k)
                yield dg.MaterializeResult(asset_key=m.key)
            wanted = [i for i, n in enumerate(m.check_names) if dg.AssetCheckKey(m.key, n) in selected_checks]
            if wanted:
                yield from _check_results(context, m, wanted, wh, keys, days)
        if failures:
            raise AssetStepError(
                "; ".join(f"{m.key.to_user_string()}: {type(e).__name__}: {e}" for m, e in failures)
            ) from failures[0][1]

    return _group


def _check_results(
    context: dg.AssetExecutionContext,
    m: Member,
    wanted: list[int],
    wh: Warehouse,
    keys: list[str],
    days: list[date],
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks (``wanted``: positions in ``m.check_names``) of the run's partitions
    (``keys``, ``days``): a single-partition run yields each result; a range run records each
    partition's result and yields one summary per check."""
    outcomes = m.evaluate(wh, days, context.run.run_id)
    unwritten = [k for k in keys if k not in outcomes]
    label = m.key.to_user_string()
    if unwritten:
        # nothing to check is not a failed check: no result, no alert, no remediation entry
        context.log.info(f"{label}: {len(unwritten)} partition(s) not materialized")
    if not outcomes:
        return
    if context.has_partition_key:
        for i in wanted:
            o = outcomes[keys[0]][i]
            yield dg.AssetCheckResult(
                asset_key=m.key,
                check_name=o.name,
                passed=o.passed,
                description=o.description,
                metadata=o.metadata,
                severity=dg.AssetCheckSeverity(o.severity),
            )
        return
    # A range run stores yielded results without a partition, so record each partition's result
    # explicitly, then yield one summary per check that fails if any partition failed. Each
    # evaluation names the partition's materialization it checked: without it Dagster counts the
    # result as out of date and the UI's check partitions view stays empty.
    targets = latest_materializations(context.instance, m.key, list(outcomes))
    for k, per_check in outcomes.items():
        for i in wanted:
            o = per_check[i]
            # log_event accepts check evaluations at runtime; its annotation lags behind
            context.op_execution_context.log_event(
                dg.AssetCheckEvaluation(  # type: ignore[arg-type]
                    asset_key=m.key,
                    check_name=o.name,
                    passed=o.passed,
                    partition=k,
                    description=o.description,
                    metadata=o.metadata,
                    severity=dg.AssetCheckSeverity(o.severity),
                    target_materialization_data=targets.get(k),
                )
            )
    for i in wanted:
        failed = [k for k, per_check in outcomes.items() if not per_check[i].passed]
        yield dg.AssetCheckResult(
            asset_key=m.key,
            check_name=m.check_names[i],
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
