"""The ``coverage_report`` asset: coverage and freshness of every asset (bars and indicators), viewable in the UI
(a markdown table and a heatmap picture in its metadata) and written as HTML, CSV and PNG to
``$MARKETCOV_REPORT_DIR`` (default ``$DAGSTER_HOME/reports``). Refreshed after every run that
succeeds and hourly.

No ``from __future__ import annotations`` here: Dagster inspects the context annotations.
"""

import base64
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.coverage import report as coverage_summary
from marketcov_dagster.lib.freshness import freshness_now
from marketcov_dagster.lib.report import (
    CROSS_CHECK_KINDS,
    findings_table,
    heatmap,
    heatmap_png,
    markdown_table,
    write_report,
)
from marketcov_dagster.lib.universe import AssetSpecification

REPORT_KEY = dg.AssetKey("coverage_report")
REPORT_JOB = "coverage_report_job"
REPORT_DIR_ENV = "MARKETCOV_REPORT_DIR"


def report_dir(instance: dg.DagsterInstance) -> Path:
    return Path(os.environ.get(REPORT_DIR_ENV) or Path(instance.root_directory) / "reports")


def build_coverage_report(
    specs: Sequence[AssetSpecification], clock: Callable[[], datetime]
) -> tuple[dg.AssetsDefinition, UnresolvedAssetJobDefinition, dg.ScheduleDefinition, dg.SensorDefinition]:

    @dg.asset(
        key=REPORT_KEY,
        group_name="reports",
        deps=[dg.AssetKey(list(s.key_path)) for s in specs],
        kinds={"html", "csv"},
        description="Coverage (%, segments, missing, partial, expired, last session) and lag of every asset "
        "(bars and indicators), "
        "with a heatmap of the last 60 days; also written as HTML, CSV and PNG.",
    )
    def coverage_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        now = clock()
        wh = warehouse.get()
        assets = coverage_for(context.instance, specs, now, wh)
        lags = {f.asset_key: f for f in freshness_now(wh, specs, now)}
        png = heatmap_png(heatmap(assets, now.date()))
        files = write_report(report_dir(context.instance), assets, lags, png, now)
        summary = coverage_summary(assets, now)["summary"]
        assert isinstance(summary, dict)
        findings = warehouse.get().remediation(kinds=list(CROSS_CHECK_KINDS), since=now - timedelta(days=30))
        return dg.MaterializeResult(
            metadata={
                "coverage": dg.MetadataValue.md(markdown_table(assets, lags)),
                "heatmap": dg.MetadataValue.md(
                    "Last 60 days: green complete, amber partial, red missing, grey not a session.\n\n"
                    f"![coverage heatmap](data:image/png;base64,{base64.b64encode(png).decode()})"
                ),
                "coverage_pct": float(summary["coverage_pct"]),
                "assets": len(assets),
                "missing_sessions": int(summary["missing_sessions"]),
                "partial_sessions": int(summary["partial_sessions"]),
                "stale_assets": sum(1 for f in lags.values() if f.stale),
                "cross_checks": dg.MetadataValue.md(
                    "Last 30 days of reconciliation and daily-vs-minute findings (`marketcov remediation`).\n\n"
                    + findings_table(findings.to_dict("records"))
                ),
                "html": dg.MetadataValue.path(str(files.html)),
                "csv": dg.MetadataValue.path(str(files.csv)),
            }
        )

    job = dg.define_asset_job(REPORT_JOB, selection=[REPORT_KEY], description="Refresh the coverage report.")
    schedule = dg.ScheduleDefinition(
        name="coverage_report_schedule",
        cron_schedule="7 * * * *",
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Hourly refresh of the coverage report.",
    )

    @dg.run_status_sensor(
        name="coverage_report_after_runs",
        run_status=dg.DagsterRunStatus.SUCCESS,
        request_job=job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Refreshes the coverage report after every successful run that may have changed coverage.",
    )
    def refresh_after_runs(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        if context.dagster_run.job_name == REPORT_JOB:
            return dg.SkipReason("the report's own run")
        return dg.RunRequest(run_key=f"report-after-{context.dagster_run.run_id}")

    return coverage_report, job, schedule, refresh_after_runs
