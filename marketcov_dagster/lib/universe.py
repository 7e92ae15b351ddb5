"""The universe config: which symbols, on which calendar, at which intervals, from which vendors.

Loaded from YAML (default ``marketcov.yaml`` in the working directory, overridable with
``MARKETCOV_CONFIG``) and validated before anything starts: a bad field raises ``ConfigError``
naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from marketcov_dagster.lib.calendars import calendar_names
from marketcov_dagster.lib.intervals import DERIVED_FROM, FETCHED, INTERVALS, Interval
from marketcov_dagster.lib.symbols import is_valid_symbol, symbol_to_key_part

CONFIG_ENV = "MARKETCOV_CONFIG"
DEFAULT_CONFIG_FILE = "marketcov.yaml"
KNOWN_VENDORS = ("synthetic", "alpaca", "binance", "polygon")
# One price basis: every vendor is asked for bars as traded, so a fallback can never mix bases
RAW_ONLY = (
    "marketcov stores raw (as traded) bars only, so that a session served by a fallback vendor is on "
    "the same basis as its neighbours; split- and dividend-adjusted views are derived on read from the "
    "corporate-actions ledger (marketcov bars --adjust, docs/prices.md)"
)
MAX_WINDOW_DAYS: dict[Interval, int] = {"1d": 365 * 30, "1m": 365 * 2}


# No coercion: `window_days: true` is not 1, `"30"` is not 30, `expire: "yes"` is not True, and
# `.inf` is not a threshold. Numbers may still be written as ints where floats are expected.
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ConfigError(ValueError):
    """The universe config is invalid; the message names every offending field."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class IntervalSettings(BaseModel):
    model_config = STRICT

    derived_from: Interval | None = Field(
        default=None,
        alias="from",
        description="Resampled from this interval's stored bars (5m, 15m, 30m, 1h from 1m; 1w from 1d), never fetched; "
        "unset settings follow the source's.",
    )
    window_days: int = Field(gt=0, description="How far back partitions reach, in calendar days.")
    min_completeness: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Share of the calendar's expected bars a partition needs to count as complete.",
    )
    freshness_threshold_minutes: float = Field(
        default=60.0, gt=0, description="Lag above which an asset is stale: an incident opens and one email goes out."
    )
    vendor_delay_minutes: float = Field(
        ge=0,
        description="How long after a bar ends the vendor is expected to serve it (1d: after the session close).",
    )
    schedule_delay_minutes: int = Field(
        ge=0,
        le=240,
        description="Minutes after each session close the scheduled run starts (1m: the final refresh of the day).",
    )
    refresh_every_minutes: int = Field(
        default=15, ge=1, le=60, description="1m only: cadence of the intraday refresh of today's partition."
    )
    expire: bool = Field(description="Delete bars older than the window (the retention job).")
    on_revision: Literal["accept", "hold"] = Field(
        default="accept",
        description="A re-fetch that changes stored bars: accept stores the vendor's new bars (the revision is "
        "recorded); hold keeps the stored bars, records the new ones as pending and fails the "
        "no_pending_revision check until `marketcov revisions accept` or `reject`.",
    )


class VendorSettings(BaseModel):
    """HTTP discipline and options of one vendor; every field has a documented default."""

    model_config = STRICT

    requests_per_minute: float = Field(gt=0, description="Token-bucket rate shared by every process.")
    burst: int = Field(default=1, ge=1, description="Token-bucket capacity (requests allowed at once).")
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20, description="Tries per request, the first included.")
    backoff_base: float = Field(default=0.5, gt=0, description="Seconds; doubled per retry, full jitter.")
    backoff_max: float = Field(default=30.0, gt=0)
    max_wait: float = Field(
        default=120.0,
        ge=0,
        description="Longest Retry-After or ban a request waits out; longer ones fail over to the next vendor.",
    )
    rate_window_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a 429 without Retry-After waits: the vendor's quota window (per-minute quotas).",
    )
    # vendor-specific options (ignored by vendors they do not apply to)
    feed: str = Field(default="iex", description="alpaca: iex, sip, delayed_sip, ...")
    adjustment: str = Field(
        default="raw", description="alpaca: only raw (as traded); adjusted views come from the actions ledger"
    )
    session_only: bool = Field(
        default=True, description="alpaca/polygon: drop minute bars outside the regular session before validation."
    )
    adjusted: bool = Field(
        default=False, description="polygon: only false (as traded); adjusted views come from the actions ledger"
    )
    actions_api: Literal["stocks_v1", "v3_reference"] = Field(
        default="stocks_v1",
        description="polygon: corporate actions from /stocks/v1/splits and /dividends (the successors, since "
        "February 2026) or the deprecated /v3/reference/ ones",
    )
    weight_limit: int = Field(default=6000, gt=0, description="binance: request weight allowed per minute per IP")
    symbols: dict[str, str] = Field(default_factory=dict, description="our symbol -> the vendor's symbol")

    @field_validator("adjustment")
    @classmethod
    def _raw_only(cls, v: str) -> str:
        if v != "raw":
            raise ValueError(f"{v!r} is refused: {RAW_ONLY}")
        return v

    @field_validator("adjusted")
    @classmethod
    def _unadjusted_only(cls, v: bool) -> bool:
        if v:
            raise ValueError(f"true is refused: {RAW_ONLY}")
        return v


DEFAULT_VENDOR_SETTINGS: dict[str, dict[str, Any]] = {
    # documented limits: Alpaca basic plan 200 calls/min; Binance 6000 weight/min at weight 2 per
    # klines call (we stay well below); Polygon free tier 5 calls/min
    "synthetic": {"requests_per_minute": 1e9, "burst": 1_000_000},
    "alpaca": {"requests_per_minute": 200, "burst": 5},
    "binance": {"requests_per_minute": 1200, "burst": 10},
    "polygon": {"requests_per_minute": 5, "burst": 1},
}

# per-interval defaults under the user's settings: minute bars arrive within minutes and expire
# with the rolling window; daily bars are final some time after the close and are kept
DEFAULT_INTERVAL_SETTINGS: dict[str, dict[str, Any]] = {
    "1d": {"vendor_delay_minutes": 60, "schedule_delay_minutes": 30, "expire": False},
    "1m": {"vendor_delay_minutes": 15, "schedule_delay_minutes": 5, "expire": True, "min_completeness": 0.98},
}

# which (calendar kind, interval) each vendor can serve faithfully
_SUPPORTS: dict[str, set[tuple[str, Interval]]] = {
    "synthetic": {("exchange", "1d"), ("exchange", "1m"), ("24/7", "1d"), ("24/7", "1m")},
    "alpaca": {("exchange", "1d"), ("exchange", "1m"), ("24/7", "1m")},
    "binance": {("24/7", "1d"), ("24/7", "1m")},
    "polygon": {("exchange", "1d"), ("exchange", "1m")},
}
_WHY_NOT = {
    ("alpaca", "24/7", "1d"): "Alpaca's daily crypto bars start at midnight US/Central, not at 00:00 UTC",
    ("binance", "exchange"): "Binance lists crypto pairs only",
    ("polygon", "24/7"): "Polygon's daily bars are US/Eastern days, not UTC days",
}


def _unsupported(vendor: str, calendar: str, interval: Interval) -> str | None:
    kind = "24/7" if calendar == "24/7" else "exchange"
    if (kind, interval) in _SUPPORTS[vendor]:
        return None
    why = _WHY_NOT.get((vendor, kind, interval)) or _WHY_NOT.get((vendor, kind)) or "not supported"
    return f"vendor {vendor!r} cannot serve {interval} bars on calendar {calendar!r}: {why}"


class AssetClassConfig(BaseModel):
    model_config = STRICT

    calendar: str
    vendors: list[str] = Field(min_length=1)
    intervals: list[Interval] = Field(min_length=1)
    symbols: list[str] = Field(min_length=1)

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, v: str) -> str:
        if v not in calendar_names():
            raise ValueError(f"unknown calendar {v!r} (exchange_calendars names, e.g. 'XNYS', '24/7')")
        return v

    @field_validator("vendors")
    @classmethod
    def _known_vendors(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in KNOWN_VENDORS]
        if unknown:
            raise ValueError(f"unknown vendor(s) {unknown}; known: {list(KNOWN_VENDORS)}")
        if len(set(v)) != len(v):
            raise ValueError("a vendor is listed twice")
        return v

    @field_validator("intervals")
    @classmethod
    def _unique_intervals(cls, v: list[Interval]) -> list[Interval]:
        if len(set(v)) != len(v):
            raise ValueError("an interval is listed twice")
        return v

    @field_validator("symbols")
    @classmethod
    def _valid_symbols(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not is_valid_symbol(s)]
        if bad:
            raise ValueError(f"malformed symbol(s) {bad}: use upper-case letters, digits and . - / = ^ _")
        return v


class HealingSettings(BaseModel):
    """The gap-healing sensor (off until started in the UI)."""

    model_config = STRICT

    max_runs_per_tick: int = Field(default=4, ge=1, le=100, description="Runs one tick may request.")
    max_in_flight: int = Field(default=8, ge=1, le=1000, description="Healing runs queued or running at once.")
    interval_seconds: int = Field(default=300, ge=30, description="Seconds between ticks.")


class AlertingSettings(BaseModel):
    """How often the alert sensors evaluate (SMTP settings come from the environment)."""

    model_config = STRICT

    freshness_interval_seconds: int = Field(default=600, ge=5, description="Seconds between freshness ticks.")
    failure_interval_seconds: int = Field(default=60, ge=5, description="Seconds between failure-alert ticks.")


class CrossIntervalSettings(BaseModel):
    """The check that each daily bar agrees with its session's minute bars (for symbols that
    have both intervals)."""

    model_config = STRICT

    severity: Literal["WARN", "ERROR"] = Field(default="WARN", description="WARN: shown, not failing the run.")
    open_close_tolerance_bps: float = Field(default=25.0, ge=0, description="Open/close vs the minutes, in bps.")
    volume_tolerance_pct: float = Field(default=10.0, ge=0, description="Volume vs the minutes' sum, in %.")


class ReconciliationSettings(BaseModel):
    """The opt-in cross-vendor reconciliation job (its schedule is off until started in the UI)."""

    model_config = STRICT

    sample_sessions: int = Field(default=5, ge=1, le=500, description="Stored sessions re-fetched per asset.")
    price_tolerance_bps: float = Field(default=10.0, ge=0, description="OHLC apart by more is a divergence.")
    volume_tolerance_pct: float = Field(default=5.0, ge=0, description="Volume apart by more is a divergence.")
    cron: str = Field(default="0 6 * * *", description="When the schedule runs (UTC), once started.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        from marketcov_dagster.lib.cron import cron_error

        error = cron_error(v)
        if error:
            raise ValueError(error)
        return v


class IndicatorSettings(BaseModel):
    """Indicator assets ``indicators/<interval>/<SYMBOL>`` (SMA, EMA, RSI, ATR, ADX, MACD, returns)."""

    model_config = STRICT

    intervals: list[Interval] = Field(
        default_factory=list, description="Intervals whose every asset gets an indicator asset (e.g. [1d])."
    )


class SlaSettings(BaseModel):
    """Service levels the status API and page judge (verdicts shown in a banner, not alerts)."""

    model_config = STRICT

    min_current_pct: float = Field(
        default=90.0, ge=0, le=100, description="Share of assets, in %, whose latest closed session is stored."
    )
    max_lag_hours: float = Field(default=48.0, gt=0, description="No asset's newest bar trails by more than this.")


class UniverseConfig(BaseModel):
    model_config = STRICT

    intervals: dict[Interval, IntervalSettings]
    asset_classes: dict[str, AssetClassConfig] = Field(min_length=1)
    vendors: dict[str, VendorSettings] = Field(default_factory=dict)
    healing: HealingSettings = Field(default_factory=HealingSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    daily_vs_minutes: CrossIntervalSettings = Field(default_factory=CrossIntervalSettings)
    reconciliation: ReconciliationSettings = Field(default_factory=ReconciliationSettings)
    indicators: IndicatorSettings = Field(default_factory=IndicatorSettings)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Merge each interval's and each vendor's documented defaults under the user's settings."""
        if not isinstance(data, dict):
            return data
        intervals = data.get("intervals")
        if isinstance(intervals, dict):
            merged_ivs = {
                iv: {**DEFAULT_INTERVAL_SETTINGS.get(iv, {}), **st} if isinstance(st, dict) else st
                for iv, st in intervals.items()
            }
            for iv, st in merged_ivs.items():  # a derived interval follows its source where unset
                src = st.get("from") if isinstance(st, dict) else None
                if iv in FETCHED and src is not None:
                    raise ValueError(f"intervals.{iv}.from: {iv} bars are fetched from vendors, not derived")
                if iv in DERIVED_FROM and src != DERIVED_FROM[iv]:
                    want = DERIVED_FROM[iv]
                    raise ValueError(f"intervals.{iv}: {iv} bars are resampled from {want}: add 'from: {want}'")
                if isinstance(src, str) and isinstance(merged_ivs.get(src), dict) and "from" not in merged_ivs[src]:
                    inherited = {k: v for k, v in merged_ivs[src].items() if k != "refresh_every_minutes"}
                    merged_ivs[iv] = {**inherited, **st}
            data = {**data, "intervals": merged_ivs}
        given = data.get("vendors") or {}
        if not isinstance(given, dict):
            return data
        unknown = [v for v in given if v not in KNOWN_VENDORS]
        if unknown:
            raise ValueError(f"vendors: unknown vendor(s) {unknown}; known: {list(KNOWN_VENDORS)}")
        merged = {}
        for name in KNOWN_VENDORS:
            override = given.get(name) or {}
            merged[name] = {**DEFAULT_VENDOR_SETTINGS[name], **override} if isinstance(override, dict) else override
        return {**data, "vendors": merged}

    @model_validator(mode="after")
    def _consistent(self) -> UniverseConfig:
        for name, ac in self.asset_classes.items():
            for iv in ac.intervals:
                if iv not in FETCHED:
                    raise ValueError(
                        f"asset_classes.{name}.intervals: {iv!r} is derived; list it under 'intervals' with "
                        f"'from: {DERIVED_FROM[iv]}' and every asset class with {DERIVED_FROM[iv]} bars gets it"
                    )
                if iv not in self.intervals:
                    raise ValueError(f"asset_classes.{name}.intervals: {iv!r} has no settings under 'intervals'")
        for iv, st in self.intervals.items():
            if iv not in FETCHED:
                want = DERIVED_FROM[iv]
                if want not in self.intervals:
                    raise ValueError(f"intervals.{iv}.from: {want!r} has no settings under 'intervals'")
                if st.window_days > self.intervals[want].window_days:
                    raise ValueError(
                        f"intervals.{iv}.window_days: {st.window_days} reaches beyond its source {want}'s "
                        f"{self.intervals[want].window_days} days"
                    )
                continue
            if st.window_days > MAX_WINDOW_DAYS[iv]:
                raise ValueError(
                    f"intervals.{iv}.window_days: {st.window_days} exceeds the maximum "
                    f"{MAX_WINDOW_DAYS[iv]} for {iv} bars"
                )
        for iv in self.indicators.intervals:
            if iv not in self.intervals:
                raise ValueError(f"indicators.intervals: {iv!r} has no settings under 'intervals'")
        seen: dict[str, str] = {}
        for name, ac in self.asset_classes.items():
            for sym in ac.symbols:
                if sym in seen:
                    raise ValueError(
                        f"asset_classes.{name}.symbols: duplicate symbol {sym!r} (also in asset class {seen[sym]!r})"
                    )
                seen[sym] = name
            for vendor in ac.vendors:
                for iv in ac.intervals:
                    problem = _unsupported(vendor, ac.calendar, iv)
                    if problem:
                        raise ValueError(f"asset_classes.{name}.vendors: {problem}")
        return self


@dataclass(frozen=True)
class AssetSpecification:
    """Everything needed to build and run one (symbol, interval) asset."""

    symbol: str
    interval: Interval
    asset_class: str
    calendar: str
    vendors: tuple[str, ...]
    window_days: int
    min_completeness: float
    freshness_threshold_minutes: float = 60.0
    vendor_delay_minutes: float = 0.0
    expire: bool = False  # bars older than the window are deleted by the retention job
    derived_from: Interval | None = None  # resampled from this interval's bars, never fetched
    indicators: bool = False  # the indicator asset of these bars (``indicators/...``) rather than the bars
    on_revision: str = "accept"  # accept | hold: what a re-fetch that changes stored bars does

    @property
    def pool(self) -> str:
        """The Dagster pool capping concurrent steps against the first vendor of the chain
        (derived assets call no vendor: they share one pool of their own)."""
        return f"vendor_{self.vendors[0]}" if self.vendors else "derived"

    @property
    def indicator_key_path(self) -> tuple[str, str, str]:
        """The key of the indicator asset computed from this asset's bars (when configured)."""
        return ("indicators", self.interval, symbol_to_key_part(self.symbol))

    @property
    def source_key_path(self) -> tuple[str, str, str] | None:
        """The asset a derived asset is resampled from."""
        if self.derived_from is None:
            return None
        return ("ohlcv", self.derived_from, symbol_to_key_part(self.symbol))

    @property
    def kind(self) -> str:
        """``ohlcv`` for bars (fetched or resampled), ``indicators`` for an indicator asset."""
        return "indicators" if self.indicators else "ohlcv"

    @property
    def key_path(self) -> tuple[str, str, str]:
        return (self.kind, self.interval, symbol_to_key_part(self.symbol))

    @property
    def upstream_key_str(self) -> str | None:
        """The asset this one is computed from (its bars for an indicator asset, the finer bars
        for a resampled one); None for fetched bars."""
        if self.indicators:
            return "/".join(("ohlcv", self.interval, symbol_to_key_part(self.symbol)))
        return "/".join(self.source_key_path) if self.source_key_path else None

    @property
    def key_str(self) -> str:
        return "/".join(self.key_path)

    @property
    def group(self) -> tuple[str, Interval]:
        """Assets of one group share a partitions definition and run together."""
        return (self.calendar, self.interval)


@dataclass(frozen=True)
class Universe:
    config: UniverseConfig
    source: str

    @property
    def specs(self) -> list[AssetSpecification]:
        out = []
        derived = [(iv, st) for iv, st in self.config.intervals.items() if st.derived_from is not None]
        for name, ac in self.config.asset_classes.items():
            ivs = [*ac.intervals, *(iv for iv, st in derived if st.derived_from in ac.intervals)]
            for iv in ivs:
                st = self.config.intervals[iv]
                for sym in ac.symbols:
                    out.append(
                        AssetSpecification(
                            symbol=sym,
                            interval=iv,
                            asset_class=name,
                            calendar=ac.calendar,
                            vendors=() if st.derived_from else tuple(ac.vendors),
                            window_days=st.window_days,
                            min_completeness=st.min_completeness,
                            freshness_threshold_minutes=st.freshness_threshold_minutes,
                            vendor_delay_minutes=st.vendor_delay_minutes,
                            expire=st.expire,
                            derived_from=st.derived_from,
                            on_revision=st.on_revision,
                        )
                    )
        return out

    @property
    def indicator_specs(self) -> list[AssetSpecification]:
        """The assets whose bars get an indicator asset."""
        return [s for s in self.specs if s.interval in self.config.indicators.intervals]

    @property
    def all_specs(self) -> list[AssetSpecification]:
        """Every asset the universe defines: bars (fetched and resampled), then indicator assets."""
        specs = self.specs
        return [*specs, *self.indicators_of(specs)]

    def indicators_of(self, specs: Sequence[AssetSpecification]) -> list[AssetSpecification]:
        """The indicator assets computed from ``specs``' bars (``indicators/<interval>/<SYMBOL>``)."""
        wanted = self.config.indicators.intervals
        return [replace(s, indicators=True) for s in specs if s.interval in wanted and not s.indicators]

    def select(
        self,
        symbols: list[str] | None = None,
        intervals: list[str] | None = None,
        asset_classes: list[str] | None = None,
    ) -> list[AssetSpecification]:
        """Specs matching every given filter; unknown filter values raise ``ConfigError``."""
        specs = self.specs
        for label, wanted, known in (
            ("symbol", symbols, {s.symbol for s in specs}),
            ("interval", intervals, {s.interval for s in specs}),
            ("asset class", asset_classes, set(self.config.asset_classes)),
        ):
            if wanted:
                unknown = sorted(set(wanted) - known)
                if unknown:
                    raise ConfigError(f"unknown {label}(s) {unknown}; the universe has {sorted(known)}")
        return [
            s
            for s in specs
            if (not symbols or s.symbol in symbols)
            and (not intervals or s.interval in intervals)
            and (not asset_classes or s.asset_class in asset_classes)
        ]


def _format_errors(err: ValidationError) -> str:
    """Each error once: a derived interval inherits its source's settings, so an error in a
    source's setting is shown under the source only, not again under each interval derived from it."""
    found = [
        (tuple(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "), repr(e.get("input")))
        for e in err.errors()
    ]
    seen = set(found)
    sources: dict[str, str] = {str(k): str(v) for k, v in DERIVED_FROM.items()}
    lines = []
    for loc, msg, given in found:
        source = sources.get(loc[1]) if len(loc) >= 3 and loc[0] == "intervals" else None
        if source and (("intervals", source, *loc[2:]), msg, given) in seen:
            continue  # the same value and error, inherited from the source interval
        lines.append(f"{'.'.join(loc) or '<root>'}: {msg}")
    return "; ".join(lines)


def parse_universe(data: Any, source: str = "<dict>") -> Universe:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping, got {type(data).__name__}")
    data = dict(data)
    ivs = data.get("intervals")
    if isinstance(ivs, dict):
        unknown = [k for k in ivs if k not in INTERVALS]
        if unknown:
            raise ConfigError(f"{source}: intervals: unknown interval(s) {unknown}; supported: {list(INTERVALS)}")
    try:
        cfg = UniverseConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format_errors(e)}") from None
    return Universe(cfg, source)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_universe(path: str | Path | None = None) -> Universe:
    p = Path(path) if path is not None else config_path()
    if not p.is_file():
        raise ConfigError(f"universe config {str(p)!r} not found; set {CONFIG_ENV} or run from the project root")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the universe config ({e.strerror or type(e).__name__})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    return parse_universe(data, str(p))
