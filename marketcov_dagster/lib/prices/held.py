"""``no_pending_revision``: under ``on_revision: hold``, a partition whose vendor now serves other
bars fails until someone accepts or rejects the revision."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from marketcov_dagster.lib.verify import CheckOutcome
from marketcov_dagster.lib.warehouse import Warehouse

NO_PENDING_REVISION = "no_pending_revision"


def pending_revision_check(
    warehouse: Warehouse, symbol: str, interval: str, days: Sequence[date]
) -> dict[str, CheckOutcome]:
    """The check's outcome for each of ``days`` (written partitions)."""
    keys = [d.isoformat() for d in days]
    pending = warehouse.pending_revisions(symbol, interval, keys) if keys else {}
    out: dict[str, CheckOutcome] = {}
    for k in keys:
        rev = pending.get(k)
        if rev is None:
            out[k] = CheckOutcome(NO_PENDING_REVISION, True, "no revision pending a decision", {})
            continue
        out[k] = CheckOutcome(
            NO_PENDING_REVISION,
            False,
            f"{rev.vendor} now serves other bars ({rev.bars_changed} changed, {rev.bars_added} added, "
            f"{rev.bars_removed} removed, largest price change {100 * rev.max_rel_change:.2f}%); the stored bars "
            f"stay until `marketcov revisions accept` or `reject --asset ohlcv/{interval}/{symbol} --partition {k}`",
            {"revision_id": rev.id, "old_checksum": rev.old_checksum, "new_checksum": rev.new_checksum},
        )
    return out
