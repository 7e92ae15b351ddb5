"""Response models: the OpenAPI document describes exactly what each endpoint returns."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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
    gap_sessions: int = Field(description="missing or partial sessions at or after the first stored one")
    gapped: bool = Field(description="gap_sessions > 0 (older history not loaded yet is not a gap)")
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
    state: Literal["ok", "stale", "gapped", "no_data"] = Field(
        description="stale, else no_data (not built yet), else gapped, else ok: the same on every surface"
    )


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
    lost: list[str] = Field(
        default_factory=list, description="materialized, but the bars are gone from the warehouse: counted as missing"
    )
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
    note: str | None = Field(
        default=None, description="what was done with the range, e.g. a start before the calendar's first session"
    )


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
    price_factor: float | None = Field(None, description="adjusted bars: what the raw prices were multiplied by")
    volume_factor: float | None = Field(None, description="adjusted bars: what the raw volume was multiplied by")


class AppliedAction(Model):
    type: Literal["split", "dividend"]
    ex_date: str
    description: str
    ratio_from: float | None
    ratio_to: float | None
    cash: float | None
    currency: str | None
    reference_close: float | None = Field(description="dividends: the raw close of the session before the ex-date")
    price_factor: float
    volume_factor: float
    vendor: str
    vendor_id: str


class ActionTerms(Model):
    """A corporate action as the ledger keeps each vendor's statement of it."""

    symbol: str
    kind: Literal["split", "dividend"]
    ex_date: str
    vendor: str
    vendor_id: str
    ratio_from: float
    ratio_to: float
    cash: float | None
    currency: str | None


class SkippedAction(ActionTerms):
    reason: str


class UnverifiedSession(Model):
    session: str
    check: str
    description: str


class AdjustedBars(Model):
    """Bars adjusted on read: raw = adjusted / factor, each factor a product of ledger actions."""

    adjust: Literal["split", "all"]
    as_of: str = Field(description="the session whose price basis the bars are in")
    convention: str
    actions: list[AppliedAction]
    skipped: list[SkippedAction]
    unverified: list[UnverifiedSession] = Field(
        description="sessions of the range whose latest checks failed (their bars are shown, and named here)"
    )
    bars: list[Bar]


class LedgerAction(ActionTerms):
    description: str
    first_seen: str
    last_changed: str
    withdrawn_at: str | None
    in_force: bool
    price_factor: float | None
    volume_factor: float | None
    reference_close: float | None


class FactorRange(Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(alias="from", description="first session (null: since the first bar)")
    to: str
    split_factor: float
    dividend_factor: float
    price_factor: float
    volume_factor: float


class ActionsReport(Model):
    symbol: str
    calendar: str
    basis: str = Field(description="the session whose prices the factors lead to")
    actions: list[LedgerAction]
    skipped: list[SkippedAction]
    ranges: list[FactorRange]


class RevisionEntry(Model):
    id: int
    asset_key: str
    symbol: str
    interval: str
    session: str
    vendor: str
    run_id: str
    old_checksum: str
    new_checksum: str
    bars_added: int
    bars_removed: int
    bars_changed: int
    max_rel_change: float = Field(description="largest |new - old| / old over the prices of bars in both")
    status: Literal["accepted", "pending", "rejected", "superseded"]
    revised_at: str
    decided_at: str | None


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


class PoolSlot(Model):
    run_id: str
    step_key: str
    run_status: str = Field(description="the run's Dagster status; a finished run here holds a slot it never freed")
    since: str | None = Field(description="when the step started waiting (waiters only)")


class Pool(Model):
    pool: str = Field(description="a Dagster concurrency pool, vendor_<name>: caps the steps calling one vendor")
    limit: int | None
    held: int
    waiting: int
    holders: list[PoolSlot]
    waiters: list[PoolSlot]


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
    pools: list[Pool] = Field(description="each pool in use: the runs holding its slots and the steps waiting")


class Health(Model):
    ok: bool
    warehouse: str
    instance: str
