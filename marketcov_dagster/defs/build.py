"""Builds the code location's ``Definitions`` from the universe config."""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from marketcov_dagster.defs.actions import build_actions_definitions, build_ledger_rederive_sensor
from marketcov_dagster.defs.alerting import build_failure_sensor, build_freshness_sensor
from marketcov_dagster.defs.assets import ohlcv_member
from marketcov_dagster.defs.derived import build_derived_automation_sensor, derived_member
from marketcov_dagster.defs.groups import Member, build_group
from marketcov_dagster.defs.healing import build_healing_sensor
from marketcov_dagster.defs.indicators import indicator_job_name, indicator_member
from marketcov_dagster.defs.io import BARS_IO_MANAGER_KEY, OhlcvBarsIOManager
from marketcov_dagster.defs.orphans import build_orphan_sensor
from marketcov_dagster.defs.partitions import group_job_name, sessions_partitions, verify_job_name
from marketcov_dagster.defs.reconcile import build_reconcile_job
from marketcov_dagster.defs.report import build_coverage_report
from marketcov_dagster.defs.resources import EmailResource, VendorsResource, WarehouseResource
from marketcov_dagster.defs.retention import build_retention_job
from marketcov_dagster.defs.schedules import build_group_schedule
from marketcov_dagster.lib import mailer
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.freshness import ui_freshness_windows
from marketcov_dagster.lib.intervals import Interval
from marketcov_dagster.lib.universe import AssetSpecification, Universe
from marketcov_dagster.lib.vendors.registry import (
    ALPACA_KEY_ID_ENV,
    ALPACA_SECRET_KEY_ENV,
    BASE_URL_ENVS,
    POLYGON_API_KEY_ENV,
)
from marketcov_dagster.lib.warehouse import WAREHOUSE_URL_ENV

# partitioned asset checks are "preview" in Dagster 1.13 and backfill policies "beta"; we rely on
# both knowingly (see README), so their warnings would only be noise in every log.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def warehouse_resource() -> WarehouseResource:
    """The URL (it may hold a password) is passed only as an ``EnvVar``, never as a value."""
    if os.environ.get(WAREHOUSE_URL_ENV):
        return WarehouseResource(url=dg.EnvVar(WAREHOUSE_URL_ENV))
    return WarehouseResource()


def vendors_resource() -> VendorsResource:
    """Keys reach the resource only as ``EnvVar``s, so Dagster never stores or shows their values."""
    fields: dict[str, Any] = {}
    for field_name, env in (
        ("alpaca_key_id", ALPACA_KEY_ID_ENV),
        ("alpaca_secret_key", ALPACA_SECRET_KEY_ENV),
        ("polygon_api_key", POLYGON_API_KEY_ENV),
        *((f"{name}_base_url", env) for name, env in BASE_URL_ENVS.items()),
    ):
        if os.environ.get(env):
            fields[field_name] = dg.EnvVar(env)
    return VendorsResource(**fields)


def email_resource() -> EmailResource:
    """Every SMTP setting, the password included, reaches Dagster only as an ``EnvVar``."""
    fields: dict[str, Any] = {}
    for field_name, env in (
        ("smtp_host", mailer.SMTP_HOST_ENV),
        ("smtp_security", mailer.SMTP_SECURITY_ENV),
        ("smtp_user", mailer.SMTP_USER_ENV),
        ("smtp_password", mailer.SMTP_PASSWORD_ENV),
        ("sender", mailer.ALERT_FROM_ENV),
        ("recipients", mailer.ALERT_TO_ENV),
        ("subject_prefix", mailer.ALERT_SUBJECT_PREFIX_ENV),
        ("ui_url", mailer.UI_URL_ENV),
    ):
        if os.environ.get(env):
            fields[field_name] = dg.EnvVar(env)
    if os.environ.get(mailer.SMTP_PORT_ENV):
        fields["smtp_port"] = dg.EnvVar.int(mailer.SMTP_PORT_ENV)
    return EmailResource(**fields)


def group_ops(
    name: str, members: list[tuple[str, Member]], pdef: dg.PartitionsDefinition, label: str
) -> list[dg.AssetsDefinition]:
    """One op per Dagster pool of the group's (pool, member) pairs (a pool caps the steps that
    call one vendor), named after the group, with the pool appended when the group spans several."""
    by_pool: dict[str, list[Member]] = defaultdict(list)
    for pool, member in members:
        by_pool[pool].append(member)
    split = len(by_pool) > 1
    return [
        build_group(
            f"{name}__{pool}" if split else name,
            pool_members,
            pdef,
            pool,
            f"The {label} assets{f' in pool {pool}' if split else ''}: one step materializes and checks "
            "the selected ones.",
        )
        for pool, pool_members in sorted(by_pool.items())
    ]


@dataclass
class _Group:
    assets: list[dg.AssetsDefinition] = field(default_factory=list)
    jobs: list[dg.UnresolvedAssetJobDefinition] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    derived: list[dg.AssetKey] = field(default_factory=list)  # assets that follow their source


def _group_definitions(
    universe: Universe,
    calendar: str,
    interval: Interval,
    specs: list[AssetSpecification],
    now: datetime,
    minutes: set[str],
) -> _Group:
    """One (calendar, interval) group: its op(s), its job, verify job and schedule, and the
    indicators of its assets when configured."""
    out = _Group()
    pdef = sessions_partitions(calendar, specs[0].window_days, now)
    settings = universe.config.intervals[interval]
    fail, warn = ui_freshness_windows(get_calendar(calendar), interval, settings, now.date())
    policy = dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)
    members = []
    for spec in specs:
        if spec.derived_from is not None:
            members.append((spec.pool, derived_member(spec, pdef, policy)))
        else:
            cross = universe.config.daily_vs_minutes if spec.interval == "1d" and spec.symbol in minutes else None
            members.append((spec.pool, ohlcv_member(spec, pdef, universe.config.vendors, policy, cross)))
    job_name = group_job_name(calendar, interval)
    ops = group_ops(job_name.removesuffix("_job"), members, pdef, f"{interval} {calendar}")
    out.assets += ops
    keys = [m.key for _, m in members]
    if settings.derived_from is None:  # derived assets follow their source by automation
        out.schedules.append(build_group_schedule(calendar, interval, settings, job_name, now.date()))
    else:
        out.derived += keys
    out.jobs += [
        dg.define_asset_job(
            job_name,
            selection=dg.AssetSelection.assets(*keys),
            description=f"All {interval} OHLCV assets on the {calendar} calendar, one run per tick.",
        ),
        dg.define_asset_job(
            verify_job_name(calendar, interval),
            # the check keys themselves: Dagster resolves checks_for_assets by a scan of every check
            # in the location per selected asset, seconds at thousands of assets
            selection=dg.AssetSelection.checks(*(k for op in ops for k in op.check_keys)),
            description=f"Re-run the checks of the {interval} {calendar} assets against the warehouse.",
        ),
    ]
    with_indicators = [s for s in specs if interval in universe.config.indicators.intervals]
    if with_indicators:
        name = indicator_job_name(calendar, interval)
        indicators = [("derived", indicator_member(s, pdef)) for s in with_indicators]
        out.assets += group_ops(name.removesuffix("_job"), indicators, pdef, f"{interval} {calendar} indicators")
        indicator_keys = [m.key for _, m in indicators]
        out.derived += indicator_keys
        out.jobs.append(
            dg.define_asset_job(
                name,
                selection=dg.AssetSelection.assets(*indicator_keys),
                description=f"The indicators of every {interval} asset on the {calendar} calendar.",
            )
        )
    return out


def build_definitions(
    universe: Universe,
    now: datetime | None = None,
    warehouse: WarehouseResource | None = None,
    vendors: VendorsResource | None = None,
    email: EmailResource | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dg.Definitions:
    """The code location. ``now`` fixes the partition windows and ``clock`` what the sensors and
    schedules take as the current time (tests pin both; by default both are the real clock)."""
    clock = clock or (lambda: datetime.now(UTC))
    now = now or clock()
    groups: dict[tuple[str, Interval], list[AssetSpecification]] = defaultdict(list)
    for spec in universe.specs:
        groups[spec.group].append(spec)

    assets: list[dg.AssetsDefinition] = []
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    derived: list[dg.AssetKey] = []
    minutes = {s.symbol for s in universe.specs if s.interval == "1m"}  # daily bars checked against these
    for (calendar, interval), specs in sorted(groups.items()):
        group = _group_definitions(universe, calendar, interval, specs, now, minutes)
        assets += group.assets
        jobs += group.jobs
        schedules += group.schedules
        derived += group.derived
    action_assets, action_jobs, action_schedules = build_actions_definitions(universe, now)
    assets += action_assets
    jobs += action_jobs
    schedules += action_schedules
    retention_job, retention_schedule = build_retention_job(
        [s for s in universe.specs if universe.config.intervals[s.interval].expire], clock
    )
    every = universe.all_specs  # bars and indicator assets
    report, report_job, report_schedule, report_sensor = build_coverage_report(every, clock)
    reconcile_job, reconcile_schedule = build_reconcile_job(
        universe.specs, universe.config.vendors, universe.config.reconciliation, clock
    )
    heal_jobs = [j for j in jobs if j.name.startswith(("ohlcv_", "indicators_")) and not j.name.endswith("_verify_job")]
    sensors = [
        build_freshness_sensor(every, clock, universe.config.alerting.freshness_interval_seconds),
        build_failure_sensor(universe.config.alerting.failure_interval_seconds),
        build_orphan_sensor(),
        build_healing_sensor(every, heal_jobs, universe.config.healing, clock),
        report_sensor,
        *([build_derived_automation_sensor(derived)] if derived else []),
    ]
    indicator_jobs = [j for j in heal_jobs if j.name.startswith("indicators_")]
    if action_assets and indicator_jobs:  # a ledger change re-derives the symbol's indicators from its ex-date
        sensors.append(build_ledger_rederive_sensor([s for s in every if s.indicators], indicator_jobs))
    warehouse_res = warehouse or warehouse_resource()
    return dg.Definitions(
        assets=[*assets, report],
        jobs=[*jobs, retention_job, report_job, reconcile_job],
        sensors=sensors,
        schedules=[*schedules, retention_schedule, report_schedule, reconcile_schedule],
        resources={
            "warehouse": warehouse_res,
            BARS_IO_MANAGER_KEY: OhlcvBarsIOManager(warehouse=warehouse_res),
            "vendors": vendors or vendors_resource(),
            "email": email or email_resource(),
        },
    )
