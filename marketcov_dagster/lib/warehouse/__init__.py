"""The bar warehouse on SQLAlchemy 2 Core: SQLite by default, PostgreSQL by URL, same code. Split by
concern: ``schema`` (the tables and their migrations), ``core`` (URL, engine, transactions),
``lineage`` (lineage and the remediation log), ``bars`` (idempotent partition writes, reads,
expiry), ``vendors`` (vendor state shared by every process), ``indicators`` (indicator values),
``actions`` (the corporate-actions ledger), ``checks`` (each partition's latest check verdicts).
``Warehouse`` combines them; incidents and the outbox are read and written by ``lib.alerts`` on the same engine.
Writing a set of partitions deletes exactly those partitions' windows and inserts the new bars in
one transaction, so reruns, overlapping backfills and retries can neither duplicate nor lose rows.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from marketcov_dagster.lib.warehouse.actions import ActionsStore, LedgerChanges, LedgerEntry
from marketcov_dagster.lib.warehouse.bars import RETENTION, PartitionWrite
from marketcov_dagster.lib.warehouse.checks import Verdict
from marketcov_dagster.lib.warehouse.core import (
    WAREHOUSE_URL_ENV,
    WarehouseDamaged,
    WarehouseError,
    default_warehouse_url,
    redact_url,
    sqlite_path,
)
from marketcov_dagster.lib.warehouse.held import HeldRevisionStore, RevisionDecisionError
from marketcov_dagster.lib.warehouse.indicators import IndicatorStore
from marketcov_dagster.lib.warehouse.lineage import LineageRow
from marketcov_dagster.lib.warehouse.revisions import Revision
from marketcov_dagster.lib.warehouse.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    UtcDateTime,
    bars,
    check_results,
    corporate_actions,
    incidents,
    metadata,
    outbox,
    partition_lineage,
    remediation_log,
    revision_bars,
    revisions,
    schema_version,
    vendor_limits,
    vendor_status,
)
from marketcov_dagster.lib.warehouse.vendors import HEALTHY, VENDOR_STATES, VendorStateStore

__all__ = [
    "HEALTHY",
    "MIGRATIONS",
    "RETENTION",
    "SCHEMA_VERSION",
    "VENDOR_STATES",
    "WAREHOUSE_URL_ENV",
    "LedgerChanges",
    "LedgerEntry",
    "LineageRow",
    "PartitionWrite",
    "Revision",
    "RevisionDecisionError",
    "UtcDateTime",
    "Verdict",
    "Warehouse",
    "WarehouseDamaged",
    "WarehouseError",
    "bars",
    "check_results",
    "corporate_actions",
    "default_warehouse_url",
    "existing_or_empty",
    "incidents",
    "metadata",
    "outbox",
    "partition_lineage",
    "redact_url",
    "remediation_log",
    "revision_bars",
    "revisions",
    "schema_version",
    "sqlite_path",
    "vendor_limits",
    "vendor_status",
]


class Warehouse(HeldRevisionStore, VendorStateStore, IndicatorStore, ActionsStore):
    """The whole warehouse: bars with lineage and remediation, shared vendor state, indicators,
    the corporate-actions ledger."""


def existing_or_empty(url: str | None = None) -> Warehouse:
    """The warehouse for read-only commands: an embedded SQLite file that does not exist yet is
    not created; an empty in-memory warehouse stands in for it."""
    url = url or default_warehouse_url()
    try:
        u = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return Warehouse(url)  # raises the clear error
    on_disk = u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:")
    if on_disk and not Path(str(u.database)).exists():
        return Warehouse("sqlite://")
    return Warehouse(url)
