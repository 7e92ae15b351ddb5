"""The warehouse tables (SQLAlchemy 2 Core), their schema version and migrations.

Tables (schema version 5):

* ``bars``: one row per (symbol, interval, ts); ``ts`` is the bar open as UTC epoch milliseconds.
* ``partition_lineage``: one row per partition write (vendor, run id, rows, expected rows,
  checksum, first/last bar, time, and the previous checksum when a rewrite changed the data).
* ``remediation_log``: gaps, invalid bars, checksum mismatches and vendor errors.
* ``vendor_status``: each vendor's health from its most recent real calls (v2).
* ``vendor_limits``: each vendor's shared token bucket and Retry-After/ban block, so every process
  and run calling one vendor respects one rate (v2).
* ``incidents``: freshness incidents, at most one open per asset, with when each was emailed (v3).
* ``outbox``: every alert email, deduplicated by key, kept pending until SMTP accepts it (v3).
* ``indicator_values``: technical indicators per (symbol, interval, ts) of stored bars, one column
  per indicator, NULL while an indicator is warming up (v4).
* ``corporate_actions``: the ledger, every split and cash dividend each vendor stated, with when it
  was first seen and last changed; an action a vendor withdraws is kept, marked withdrawn (v5).
* ``revisions``: each re-fetch that changed a stored partition (old and new checksum, bars added,
  removed and changed, the largest relative price change), accepted or held (v5);
  ``revision_bars`` keeps the version of a held revision's partition that is not in force: the
  vendor's bars while pending or once rejected, the superseded stored bars once accepted.
* ``partition_lineage.basis`` (v5): the price basis of the bars written (``raw``; NULL before v5);
  ``partition_lineage.source_checksum`` (v5): for a derived partition, the checksum of the source
  partition(s) it was built from (a week's: a digest of its sessions' checksums).
* ``check_results`` (v5): the latest verdict of each check on each partition; a rewrite of the
  partition clears it until its checks run again. Derived partitions are built only from sources
  with no failed verdict.
* ``schema_version``: the applied schema version; migrations run on start.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

SCHEMA_VERSION = 5


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back with its offset: SQLite keeps no zone, so
    without this a read there is naive while the same read on PostgreSQL is aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} written to the warehouse; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", UtcDateTime(), nullable=False),
)

bars = sa.Table(
    "bars",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),
    sa.Column("open", sa.Float(precision=53), nullable=False),
    sa.Column("high", sa.Float(precision=53), nullable=False),
    sa.Column("low", sa.Float(precision=53), nullable=False),
    sa.Column("close", sa.Float(precision=53), nullable=False),
    sa.Column("volume", sa.Float(precision=53), nullable=False),
)

partition_lineage = sa.Table(
    "partition_lineage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("session", sa.String(10), nullable=False),
    sa.Column("vendor", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("expected_rows", sa.Integer, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("previous_checksum", sa.String(64)),
    sa.Column("first_bar", sa.BigInteger),
    sa.Column("last_bar", sa.BigInteger),
    sa.Column("written_at", UtcDateTime(), nullable=False),
    sa.Column("basis", sa.String(8)),
    sa.Column("source_checksum", sa.String(64)),
    sa.Index("ix_lineage_partition", "symbol", "interval", "session", "id"),
)

remediation_log = sa.Table(
    "remediation_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("session", sa.String(10)),
    sa.Column("vendor", sa.String(32)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_remediation_asset", "symbol", "interval", "session"),
)


vendor_status = sa.Table(
    "vendor_status",
    metadata,
    sa.Column("vendor", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("http_status", sa.Integer),
    sa.Column("since", UtcDateTime(), nullable=False),
    sa.Column("last_call_at", UtcDateTime(), nullable=False),
    sa.Column("last_ok_at", UtcDateTime()),
    sa.Column("last_failure_at", UtcDateTime()),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("rate_limited", sa.Integer, nullable=False),
)

vendor_limits = sa.Table(
    "vendor_limits",
    metadata,
    sa.Column("vendor", sa.String(32), primary_key=True),
    sa.Column("tokens", sa.Float(precision=53), nullable=False),
    sa.Column("updated_at", sa.Float(precision=53), nullable=False),
    sa.Column("blocked_until", sa.Float(precision=53), nullable=False),
    sa.Column("blocked_reason", sa.Text, nullable=False),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("asset_key", sa.String(80), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("lag_minutes", sa.Float(precision=53)),
    sa.Column("max_lag_minutes", sa.Float(precision=53)),
    sa.Column("last_lag_minutes", sa.Float(precision=53)),
    sa.Column("last_checked_at", UtcDateTime(), nullable=False),
    sa.Column("alert_sent_at", UtcDateTime()),
    sa.Column("resolved_at", UtcDateTime()),
    sa.Column("recovery_sent_at", UtcDateTime()),
    # at most one open incident per asset, whoever evaluates it and however often
    sa.Index(
        "ux_incidents_open",
        "asset_key",
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    ),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("incident_id", sa.Integer),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("sent_at", UtcDateTime()),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_until", sa.Float(precision=53), nullable=False),
    sa.Index("ix_outbox_pending", "sent_at", "id"),
)

INDICATOR_COLUMNS = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "rsi_14",
    "atr_14",
    "adx_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "ret_1",
    "ret_5",
    "ret_20",
    "ret_60",
    "ret_252",
)

indicator_values = sa.Table(
    "indicator_values",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),
    *(sa.Column(c, sa.Float(precision=53)) for c in INDICATOR_COLUMNS),
)

corporate_actions = sa.Table(
    "corporate_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ex_date", sa.String(10), nullable=False),
    sa.Column("ratio_from", sa.Float(precision=53), nullable=False),
    sa.Column("ratio_to", sa.Float(precision=53), nullable=False),
    sa.Column("cash", sa.Float(precision=53)),
    sa.Column("currency", sa.String(8)),
    sa.Column("vendor", sa.String(32), nullable=False),
    sa.Column("vendor_id", sa.String(128), nullable=False),
    sa.Column("first_seen", UtcDateTime(), nullable=False),
    sa.Column("last_changed", UtcDateTime(), nullable=False),
    sa.Column("withdrawn_at", UtcDateTime()),
    sa.UniqueConstraint("vendor", "vendor_id", name="ux_actions_vendor_id"),
    sa.Index("ix_actions_symbol", "symbol", "ex_date"),
)

revisions = sa.Table(
    "revisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("interval", sa.String(8), nullable=False),
    sa.Column("session", sa.String(10), nullable=False),
    sa.Column("vendor", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("old_checksum", sa.String(64), nullable=False),
    sa.Column("new_checksum", sa.String(64), nullable=False),
    sa.Column("bars_added", sa.Integer, nullable=False),
    sa.Column("bars_removed", sa.Integer, nullable=False),
    sa.Column("bars_changed", sa.Integer, nullable=False),
    sa.Column("max_rel_change", sa.Float(precision=53), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # accepted | pending | rejected
    sa.Column("revised_at", UtcDateTime(), nullable=False),
    sa.Column("decided_at", UtcDateTime()),
    sa.Index("ix_revisions_partition", "symbol", "interval", "session", "id"),
)

revision_bars = sa.Table(
    "revision_bars",
    metadata,
    sa.Column("revision_id", sa.Integer, primary_key=True),
    sa.Column("side", sa.String(8), primary_key=True),  # vendor (the re-fetched bars) | stored (superseded)
    sa.Column("ts", sa.BigInteger, primary_key=True),
    sa.Column("open", sa.Float(precision=53), nullable=False),
    sa.Column("high", sa.Float(precision=53), nullable=False),
    sa.Column("low", sa.Float(precision=53), nullable=False),
    sa.Column("close", sa.Float(precision=53), nullable=False),
    sa.Column("volume", sa.Float(precision=53), nullable=False),
)

check_results = sa.Table(
    "check_results",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("interval", sa.String(8), primary_key=True),
    sa.Column("session", sa.String(10), primary_key=True),
    sa.Column("check_name", sa.String(48), primary_key=True),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("severity", sa.String(8), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("evaluated_at", UtcDateTime(), nullable=False),
)

# schema version -> tables it adds; ensure_schema applies the missing ones in order
MIGRATIONS: dict[int, list[sa.Table]] = {
    1: [bars, partition_lineage, remediation_log],
    2: [vendor_status, vendor_limits],
    3: [incidents, outbox],
    4: [indicator_values],
    5: [corporate_actions, revisions, revision_bars, check_results],
}
# schema version -> columns it adds to tables of earlier versions (table, column)
COLUMN_MIGRATIONS: dict[int, list[tuple[sa.Table, sa.Column[object]]]] = {
    5: [(partition_lineage, partition_lineage.c.basis), (partition_lineage, partition_lineage.c.source_checksum)],
}
