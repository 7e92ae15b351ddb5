"""The corporate-actions ledger as Dagster assets: ``corporate_actions/<asset class>``, one per
asset class with a trading calendar (crypto has no corporate actions), partitioned by month of
ex-date, refreshed daily before the daily bars' run and backfillable like any asset.

One asset per asset class, not per symbol: the vendors state many symbols' actions per call, and
3,000 more assets would weigh on the code location for nothing a user looks at per symbol (the
per-symbol view is ``marketcov actions SYMBOL`` and ``GET /api/actions/{symbol}``).

No ``from __future__ import annotations`` here: Dagster inspects the context annotations.
"""

import calendar as month_calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from marketcov_dagster.defs.indicators import indicator_job_name
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import VendorsResource, WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.prices.ledger import LedgerUnavailable, refresh_ledger
from marketcov_dagster.lib.prices.rederive import plan_rederive
from marketcov_dagster.lib.scheduling import daily_cron
from marketcov_dagster.lib.universe import AssetClassConfig, AssetSpecification, Universe

ACTIONS_PREFIX = "corporate_actions"
VENDORS_AGREE = "vendors_agree"
ACTIONS_JOB = "corporate_actions_job"
ACTIONS_LEAD_MINUTES = 15  # the refresh runs this long before the daily bars' run


def actions_key(asset_class: str) -> dg.AssetKey:
    return dg.AssetKey([ACTIONS_PREFIX, asset_class])


def month_bounds(partition_key: str) -> tuple[date, date]:
    first = date.fromisoformat(partition_key)
    return first, first.replace(day=month_calendar.monthrange(first.year, first.month)[1])


def _actions_asset(
    name: str, ac: AssetClassConfig, universe: Universe, pdef: dg.MonthlyPartitionsDefinition
) -> dg.AssetsDefinition:
    key = actions_key(name)

    @dg.asset(
        key=key,
        group_name=ACTIONS_PREFIX,
        partitions_def=pdef,
        kinds={"sql"},
        description=(
            f"Splits and cash dividends of the {len(ac.symbols)} {name} symbols as stated by "
            f"{', '.join(ac.vendors)}, one partition per month of ex-date: the ledger adjusted bars, "
            "indicators and the jumps_explained check read."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                VENDORS_AGREE, asset=key, description="Every vendor that answered states the same actions."
            )
        ],
        metadata={"asset_class": name, "vendors": list(ac.vendors)},
        backfill_policy=dg.BackfillPolicy.single_run(),  # a year of months: one refresh, a few calls
    )
    def corporate_actions(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, vendors: VendorsResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        keys = context.partition_key_range
        first, last = month_bounds(keys.start)[0], month_bounds(keys.end)[1]
        wh = warehouse.get()
        chain = vendors.chain(ac.vendors, get_calendar(ac.calendar), universe.config.vendors, wh)
        try:
            result = refresh_ledger(wh, chain, ac.symbols, first, last)
        except LedgerUnavailable as e:
            raise dg.Failure(str(e)) from None
        for vendor, error in result.failed.items():
            context.log.warning(f"{vendor}: {error}")
        for a in result.touched():
            context.log.info(f"ledger: {a.symbol} {a.describe()} ex {a.ex_date} ({a.vendor})")
        counts = result.counts()
        context.log.info(f"{name} actions {first}..{last}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        problems = [d.describe() for d in result.disagreements]
        return dg.MaterializeResult(
            metadata={**counts, "vendors": list(result.changes), "failed_vendors": list(result.failed)},
            check_results=[
                dg.AssetCheckResult(
                    check_name=VENDORS_AGREE,
                    passed=not problems,
                    metadata={
                        "vendors": list(result.changes),
                        "disagreements": len(problems),
                        "detail": "; ".join(problems)[:4000] or "all agree",
                    },
                    description="; ".join(problems)[:1000] or None,
                )
            ],
        )

    return corporate_actions


def build_actions_definitions(
    universe: Universe, now: datetime
) -> tuple[list[dg.AssetsDefinition], list[UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    classes = {n: ac for n, ac in universe.config.asset_classes.items() if not get_calendar(ac.calendar).always_open}
    if not classes:
        return [], [], []
    days = max((s.window_days for s in universe.specs if s.asset_class in classes), default=365)
    start = (now.date() - timedelta(days=days)).replace(day=1)
    pdef = dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)
    assets = [_actions_asset(n, ac, universe, pdef) for n, ac in sorted(classes.items())]
    job = dg.define_asset_job(
        ACTIONS_JOB,
        selection=dg.AssetSelection.assets(*(actions_key(n) for n in classes)),
        partitions_def=pdef,
        description="Refresh the corporate-actions ledger of one month of ex-dates.",
    )
    schedules = [_schedule(universe, sorted(classes.values(), key=lambda ac: ac.calendar)[0], now.date())]
    return assets, [job], schedules


def _schedule(universe: Universe, ac: AssetClassConfig, today: date) -> dg.ScheduleDefinition:
    settings = universe.config.intervals.get("1d")
    delay = max(0, (settings.schedule_delay_minutes if settings else 30) - ACTIONS_LEAD_MINUTES)
    cron = daily_cron(get_calendar(ac.calendar), delay, today)

    @dg.schedule(
        name="corporate_actions_schedule",
        cron_schedule=cron.expression,
        execution_timezone=cron.timezone,
        job_name=ACTIONS_JOB,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"The ledger's current and previous month, {delay} min after each {ac.calendar} close, before the "
            "daily bars' run (vendors publish actions late and revise them)."
        ),
    )
    def _actions_schedule(context: dg.ScheduleEvaluationContext) -> Sequence[dg.RunRequest]:
        day = context.scheduled_execution_time.date()
        this_month = day.replace(day=1)
        previous = (this_month - timedelta(days=1)).replace(day=1)
        return [
            dg.RunRequest(
                run_key=f"{ACTIONS_JOB}:{month.isoformat()}:{day.isoformat()}", partition_key=month.isoformat()
            )
            for month in (previous, this_month)
        ]

    return _actions_schedule


def months_of(days: Sequence[date]) -> tuple[str, str]:
    """The first and last monthly partition keys covering ``days``."""
    return min(days).replace(day=1).isoformat(), max(days).replace(day=1).isoformat()


def refresh_for_backfill(
    defs: dg.Definitions, instance: dg.DagsterInstance, days: Sequence[date], tags: dict[str, str]
) -> dg.ExecuteInProcessResult | None:
    """Refresh the ledger of the months of ``days`` in one run, before a backfill's bars: the
    checks and the indicators read it. None when the universe has no corporate-actions assets."""
    try:
        job = defs.resolve_job_def(ACTIONS_JOB)
    except dg.DagsterInvariantViolationError:
        return None
    first, last = months_of(days)
    return job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last, **tags},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )


LEDGER_REDERIVE_SENSOR = "ledger_rederive"
LEDGER_TAG = "marketcov/ledger_change"


def build_ledger_rederive_sensor(
    specs: Sequence[AssetSpecification], jobs: Sequence[UnresolvedAssetJobDefinition]
) -> dg.SensorDefinition:
    """Derives a symbol's indicators again from the ex-date of each ledger change on (one run per
    symbol and change); the partitions before it stay as they are. Its cursor is the time of the
    newest change seen: a first tick over a filled ledger starts watching from there."""

    @dg.sensor(
        name=LEDGER_REDERIVE_SENSOR,
        jobs=list(jobs),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When the corporate-actions ledger changes, derives the symbol's point-in-time indicators "
        "again from the action's ex-date on (and only those).",
    )
    def ledger_rederive(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:  # type: ignore[type-arg]
        wh = warehouse.get()
        if context.cursor is None:
            newest = wh.ledger_last_change()
            start = newest or datetime(1970, 1, 1, tzinfo=UTC)
            return dg.SensorResult(
                cursor=start.isoformat(),
                skip_reason=f"watching ledger changes after {start.isoformat()}"
                + (" (the ledger as it stands was in force when the indicators were derived)" if newest else ""),
            )
        plan, newest = plan_rederive(wh, specs, datetime.fromisoformat(context.cursor))
        if not plan:
            return dg.SensorResult(cursor=newest.isoformat(), skip_reason="no ledger change touches stored indicators")
        requests = [
            dg.RunRequest(
                job_name=indicator_job_name(r.calendar, r.interval),
                asset_selection=[dg.AssetKey(r.asset_key.split("/"))],
                run_key=f"ledger:{r.asset_key}:{newest.isoformat()}",
                tags={
                    RANGE_START_TAG: r.first.isoformat(),
                    RANGE_END_TAG: r.last.isoformat(),
                    LEDGER_TAG: f"{r.actions} change(s) from ex-date {r.ex_date.isoformat()}",
                },
            )
            for r in plan
        ]
        return dg.SensorResult(run_requests=requests, cursor=newest.isoformat())

    return ledger_rederive
