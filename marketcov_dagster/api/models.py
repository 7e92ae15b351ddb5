"""Response models: the OpenAPI document describes exactly what each endpoint returns."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(Model, Generic[T]):
    total: int
    page: int
    page_size: int
    items: list[T]


Kind = Literal["ohlcv", "indicators"]


class AssetStatus(Model):
    asset_key: str
    kind: Kind  # bars (fetched or resampled) or an indicator asset
    symbol: str
    interval: str
    asset_class: str
    calendar: str
    window_first: str | None
    window_last: str | None
    first_session: str | None
    last_session: str | None
    coverage_pct: float
    covered_sessions: int
    expected_sessions: int
    missing_count: int
    partial_count: int
    gapped: bool
    latest_bar_end: str | None
    lag_minutes: float | None
    threshold_minutes: float
    stale: bool
    no_data: bool
    freshness_bucket: str
    open_incident: int | None
    last_alert_at: str | None
    last_vendor: str | None
    ui_url: str


class Verdict(Model):
    name: str
    target: str
    actual: str
    ok: bool


class Summary(Model):
    checked_at: str
    assets: list[AssetStatus]
    stale: int
    gapped: int
    no_data: int
    freshness_buckets: dict[str, int]
    sla: list[Verdict]
    sla_ok: bool


class Segment(Model):
    start: str
    end: str
    sessions: int
    rows: int


class AssetCoverage(Model):
    asset_key: str
    kind: Kind
    symbol: str
    interval: str
    asset_class: str
    calendar: str
    status: str
    expected_sessions: int
    covered_sessions: int
    coverage_pct: float
    first_session: str | None
    last_session: str | None
    rows: int
    segment_count: int
    missing_count: int
    partial_count: int
    expired_sessions: int
    expired_before: str | None
    first_expected: str | None
    last_expected: str | None
    segments: list[Segment]
    missing: list[str]
    partial: list[str]


class ClassCoverage(Model):
    asset_class: str
    assets: int
    complete: int
    coverage_pct: float


class CoverageList(Model):
    generated_at: str
    total: int
    page: int
    page_size: int
    by_asset_class: list[ClassCoverage]
    items: list[AssetCoverage]


class Readiness(Model):
    asset_key: str
    start: str
    end: str
    complete: bool
    expected_sessions: int
    covered_sessions: int
    missing: list[str]
    partial: list[str]
    pending: list[str]
    before_window: int
    segments: list[Segment]


class Bar(Model):
    """One stored bar (``ts``: its open, ISO 8601 UTC), with its indicators when asked for (null
    while warming up)."""

    ts: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    sma_20: float | None = None
    sma_50: float | None = None
    sma_200: float | None = None
    ema_12: float | None = None
    ema_26: float | None = None
    rsi_14: float | None = None
    atr_14: float | None = None
    adx_14: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    ret_1: float | None = None
    ret_5: float | None = None
    ret_20: float | None = None
    ret_60: float | None = None
    ret_252: float | None = None


class LineageEntry(Model):
    symbol: str
    interval: str
    session: str
    vendor: str
    rows: int
    expected_rows: int
    checksum: str
    previous_checksum: str | None
    run_id: str
    written_at: str


class CheckResult(Model):
    asset_key: str
    check_name: str
    partition: str | None
    passed: bool
    severity: str


class RunPartition(Model):
    asset_key: str
    session: str
    vendor: str
    rows: int
    expected_rows: int
    checksum: str
    previous_checksum: str | None
    checks: dict[str, bool]


class RunReport(Model):
    run_id: str
    job_name: str
    status: str
    start_time: str | None
    end_time: str | None
    ui_url: str
    partitions: list[RunPartition]
    check_results: list[CheckResult]


class RemediationEntry(Model):
    id: int
    symbol: str
    interval: str
    session: str | None
    vendor: str | None
    kind: str
    detail: str
    run_id: str | None
    created_at: str


class VendorState(Model):
    vendor: str
    state: str
    detail: str
    http_status: int | None
    since: str
    last_call_at: str
    last_ok_at: str | None
    last_failure_at: str | None
    calls: int
    failures: int
    rate_limited: int
    blocked_until: str | None


class Incident(Model):
    id: int
    asset_key: str
    symbol: str
    interval: str
    opened_at: str
    resolved_at: str | None
    lag_minutes: float | None
    max_lag_minutes: float | None
    last_lag_minutes: float | None
    alert_sent_at: str | None
    recovery_sent_at: str | None


class FailedRun(Model):
    run_id: str
    job_name: str
    at: str | None
    error: str
    ui_url: str


class Daemon(Model):
    daemon_type: str
    last_heartbeat: str | None
    healthy: bool


class Ops(Model):
    hours: int
    runs_by_status: dict[str, int]
    success_rate_30d: float | None
    success_goal: float
    finished_runs_30d: int
    failed_runs: list[FailedRun]
    queue_depth: int
    in_progress: int
    daemons: list[Daemon]


class Health(Model):
    ok: bool
    warehouse: str
    instance: str
