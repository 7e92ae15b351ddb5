"""Fetch -> validate -> checksum -> write for a run of sessions of one (symbol, interval).

Plain Python: the Dagster asset calls ``ingest_sessions`` and turns the returned
``PartitionResult``s into per-partition metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from marketcov_dagster.lib.bars import required_bars, session_index, session_mask, ts_iso, validate_bars
from marketcov_dagster.lib.calendars import SessionBounds, TradingCalendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval
from marketcov_dagster.lib.vendors.base import Vendor, VendorError
from marketcov_dagster.lib.warehouse import LineageRow, PartitionWrite, Warehouse


class SessionNotStartedError(ValueError):
    """A requested partition is a session that has not opened yet."""


@dataclass(frozen=True)
class PartitionResult:
    session: date
    rows: int
    expected_rows: int
    first_bar: str | None
    last_bar: str | None
    checksum: str
    vendor: str
    fetched_at: str
    session_closed: bool
    quarantined: int
    gap: bool
    kept_existing: bool = False
    fetched_rows: int = 0
    revision: dict[str, object] | None = None  # the stored bars this write revised (``lib.warehouse.revisions``)

    def metadata(self) -> dict[str, object]:
        """Plain-Python metadata for this partition's materialization."""
        return {
            "rows": self.rows,
            "expected_rows": self.expected_rows,
            "first_bar": self.first_bar or "",
            "last_bar": self.last_bar or "",
            "checksum": self.checksum,
            "vendor": self.vendor,
            "fetched_at": self.fetched_at,
            "session_closed": self.session_closed,
            "quarantined": self.quarantined,
            "gap": self.gap,
            "kept_existing": self.kept_existing,
            "fetched_rows": self.fetched_rows,
            "revised": self.revision is not None,
            **(
                {
                    f"revision_{k}": self.revision[k]
                    for k in (
                        "status",
                        "old_checksum",
                        "new_checksum",
                        "bars_added",
                        "bars_removed",
                        "bars_changed",
                        "max_rel_change",
                    )
                }
                if self.revision
                else {}
            ),
        }


@dataclass(frozen=True)
class _Candidate:
    """What one vendor served for one session, after quarantine."""

    vendor: str
    bars: pd.DataFrame
    quarantined: int
    fetched: int


def expected_as_of(bounds: SessionBounds, interval: Interval, now_ms: int) -> int:
    """Bars of the session that have ended by ``now_ms``."""
    return int(np.count_nonzero(bounds.bar_ends(interval) <= now_ms))


def ingest_sessions(
    *,
    symbol: str,
    interval: Interval,
    calendar: TradingCalendar,
    sessions: Sequence[date],
    vendors: Sequence[Vendor],
    warehouse: Warehouse,
    run_id: str,
    min_completeness: float = 1.0,
    now: datetime | None = None,
    log: Callable[[str], None] | None = None,
    on_revision: str = "accept",
) -> list[PartitionResult]:
    """Fetch ``sessions`` (one range request per vendor), quarantine invalid bars, checksum and
    write them atomically.

    Vendors are tried in chain order. A vendor that fails, or leaves sessions short of
    ``min_completeness``, hands those sessions to the next vendor; each session keeps the best
    answer and records the vendor that served it. A session no vendor could fill is a gap: it is
    logged, and if the warehouse already holds more bars for it, those are kept rather than
    replaced by less. Raises ``SessionNotStartedError`` before fetching anything if a session has
    not opened yet, and ``VendorError`` (after logging every vendor's error) if no vendor answered.
    """
    now = now or datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    bounds = [calendar.bounds(s) for s in sorted(set(sessions))]
    future = [b.session.isoformat() for b in bounds if b.open_ms > now_ms]
    if future:
        raise SessionNotStartedError(
            f"{symbol} {interval}: session(s) {future} have not opened yet; nothing was fetched"
        )
    job = _Job(
        symbol,
        interval,
        calendar,
        bounds,
        min_completeness,
        now_ms,
        {"symbol": symbol, "interval": interval, "run_id": run_id},
    )
    job.load_stored_tail(warehouse)
    fetched = _fetch_through_chain(job, vendors, warehouse, log)
    if not fetched.answered:
        warehouse.log_remediation(fetched.remediation)
        raise VendorError("all vendors", f"{symbol} {interval}: every vendor failed: {fetched.errors}")
    existing = warehouse.latest_lineage_many(symbol, interval, [d.isoformat() for d in fetched.short])
    writes, results = _decide_writes(job, fetched, vendors[0].name, existing)
    if writes:
        lineage = warehouse.write_partitions(writes, run_id, fetched.remediation, hold=on_revision == "hold")
        revised = {row.session: row for row in lineage if row.revision is not None}
        for row in revised.values():
            (log or (lambda _m: None))(row.revision.describe())
        results = [
            _with_revision(r, revised[r.session.isoformat()]) if r.session.isoformat() in revised else r
            for r in results
        ]
    else:
        warehouse.log_remediation(fetched.remediation)
    return results


def _with_revision(result: PartitionResult, row: LineageRow) -> PartitionResult:
    """The result of a write that revised stored bars; a held revision kept the stored partition."""
    out = replace(result, revision=row.revision.as_dict())
    if row.revision.status == "accepted":
        return out
    return replace(
        out,
        rows=row.rows,
        first_bar=ts_iso(row.first_bar) if row.first_bar is not None else None,
        last_bar=ts_iso(row.last_bar) if row.last_bar is not None else None,
        checksum=row.checksum,
        vendor=row.vendor,
        kept_existing=True,
    )


@dataclass
class _Job:
    """One ingest: the sessions of one (symbol, interval) and what each should hold by now."""

    symbol: str
    interval: Interval
    calendar: TradingCalendar
    bounds: list[SessionBounds]
    min_completeness: float
    now_ms: int
    entry: dict[str, object]  # the fields every remediation entry of this run shares
    stored: pd.DataFrame | None = None  # an open minute session's bars already stored
    fetch_from_ms: int = 0  # > 0: a refresh fetching only bars after the stored ones

    @property
    def expected(self) -> dict[date, int]:
        return {b.session: expected_as_of(b, self.interval, self.now_ms) for b in self.bounds}

    def load_stored_tail(self, warehouse: Warehouse) -> None:
        """A refresh of today's still-open minute session fetches only the bars after those stored."""
        b = self.bounds
        if self.interval == "1d" or len(b) != 1 or b[0].close_ms <= self.now_ms:
            return
        stored = warehouse.read_bars(self.symbol, self.interval, *self.calendar.partition_window_ms(b[0].session))
        self.stored = stored[session_mask(stored["ts"].to_numpy(dtype=np.int64), b, self.interval)]
        if len(self.stored):
            self.fetch_from_ms = int(self.stored["ts"].iloc[-1]) + MINUTE_MS


@dataclass
class _Fetched:
    """The best answer per session across the chain, and what was logged on the way."""

    best: dict[date, _Candidate]
    short: list[date]  # sessions no vendor filled to min_completeness
    remediation: list[dict[str, object]]
    errors: list[str]
    answered: bool


def _fetch_through_chain(
    job: _Job, vendors: Sequence[Vendor], warehouse: Warehouse, log: Callable[[str], None] | None
) -> _Fetched:
    """Ask each vendor in turn for the sessions still short, keeping each session's best answer."""
    symbol, interval, bounds, entry = job.symbol, job.interval, job.bounds, job.entry
    stored, fetch_from_ms, min_completeness = job.stored, job.fetch_from_ms, job.min_completeness
    expected = job.expected
    remediation: list[dict[str, object]] = []
    remaining = {b.session: b for b in bounds}
    best: dict[date, _Candidate] = {}
    errors: list[str] = []
    answered = False
    for i, vendor in enumerate(vendors):
        if not remaining:
            break
        todo = [remaining[d] for d in sorted(remaining)]
        if i > 0:
            msg = f"{len(todo)} session(s) {todo[0].session}..{todo[-1].session} fall back to {vendor.name}"
            if log:
                log(f"{symbol} {interval}: {msg}")
        start = datetime.fromtimestamp(max(todo[0].open_ms, fetch_from_ms) / 1000, UTC)
        end = datetime.fromtimestamp(todo[-1].close_ms / 1000, UTC)
        try:
            frame = vendor.fetch_bars(symbol, interval, start, end)
        except VendorError as e:
            errors.append(str(e))
            remediation.append({**entry, "vendor": vendor.name, "kind": "vendor_error", "detail": str(e)})
            if log:
                log(f"{symbol} {interval}: {e}")
            continue
        should_trade = sum(expected[b.session] for b in todo) if fetch_from_ms == 0 else 0  # 0: a refresh
        if frame.empty and should_trade > 0:
            # a 200 with nothing for sessions that traded (Polygon's answer to an unknown ticker)
            # is not a healthy run of empty partitions: fall back, or fail if no vendor has data
            detail = (
                f"{vendor.name}: no bars at all for {len(todo)} session(s) {todo[0].session}..{todo[-1].session} "
                f"that should hold {should_trade}: unknown symbol {symbol!r} or no data"
            )
            errors.append(detail)
            remediation.append({**entry, "vendor": vendor.name, "kind": "vendor_error", "detail": detail})
            warehouse.record_vendor_call(vendor.name, "no_data", detail, count_call=False)
            if log:
                log(f"{symbol} {interval}: {detail}")
            continue
        answered = True
        ts = frame["ts"].to_numpy(dtype=np.int64)
        report = validate_bars(frame, bounds, interval)
        where = session_index(ts, bounds, interval)
        outside = report.invalid_mask & (where < 0)
        if outside.any():
            remediation.append(
                {
                    **entry,
                    "vendor": vendor.name,
                    "kind": "invalid_bars",
                    "detail": f"quarantined {int(outside.sum())} bar(s) outside the requested sessions "
                    f"(e.g. {', '.join(ts_iso(t) for t in ts[outside][:3])})",
                }
            )
        position = {b.session: k for k, b in enumerate(bounds)}
        for b in todo:
            in_session = where == position[b.session]
            bad = report.invalid_mask & in_session
            part = frame[in_session & ~report.invalid_mask].reset_index(drop=True)
            if bad.any():
                detail = validate_bars(frame[in_session].reset_index(drop=True), [b], interval).summary()
                remediation.append(
                    {
                        **entry,
                        "session": b.session.isoformat(),
                        "vendor": vendor.name,
                        "kind": "invalid_bars",
                        "detail": f"quarantined {int(bad.sum())} bar(s): {detail}",
                    }
                )
            fetched = len(part)
            if stored is not None and len(stored):
                new = part[part["ts"] >= fetch_from_ms]
                part = pd.concat([stored, new], ignore_index=True) if len(new) else stored.reset_index(drop=True)
            cand = _Candidate(vendor.name, part, int(bad.sum()), fetched)
            if len(part) >= required_bars(expected[b.session], min_completeness):
                best[b.session] = cand
                del remaining[b.session]
            elif b.session not in best or len(part) > len(best[b.session].bars):
                best[b.session] = cand
    return _Fetched(best, sorted(remaining), remediation, errors, answered)


def _decide_writes(
    job: _Job, fetched: _Fetched, first_vendor: str, existing: dict[str, LineageRow]
) -> tuple[list[PartitionWrite], list[PartitionResult]]:
    """What to write per session: the best answer, logged as a fallback or a gap where it is one;
    never a worse answer over better bars already stored."""
    symbol, interval, calendar, entry = job.symbol, job.interval, job.calendar, job.entry
    now_ms, min_completeness, expected = job.now_ms, job.min_completeness, job.expected
    best, remediation = fetched.best, fetched.remediation
    bounds = job.bounds
    fetched_at = datetime.now(UTC).isoformat()
    writes: list[PartitionWrite] = []
    results: list[PartitionResult] = []
    for b in bounds:
        cand = best[b.session]
        day = b.session.isoformat()
        want = expected[b.session]
        gap = len(cand.bars) < want
        if cand.vendor != first_vendor:
            remediation.append(
                {
                    **entry,
                    "session": day,
                    "vendor": cand.vendor,
                    "kind": "vendor_fallback",
                    "detail": f"served by {cand.vendor} instead of {first_vendor}",
                }
            )
        old = existing.get(day)
        if gap and old is not None and old.rows > len(cand.bars):
            # nothing is lost: a worse answer never replaces better stored bars
            remediation.append(
                {
                    **entry,
                    "session": day,
                    "vendor": cand.vendor,
                    "kind": "gap",
                    "detail": f"{len(cand.bars)} of {want} expected bars; kept the {old.rows} bars "
                    f"already stored (from {old.vendor})",
                }
            )
            results.append(
                PartitionResult(
                    session=b.session,
                    rows=old.rows,
                    expected_rows=want,
                    first_bar=ts_iso(old.first_bar) if old.first_bar is not None else None,
                    last_bar=ts_iso(old.last_bar) if old.last_bar is not None else None,
                    checksum=old.checksum,
                    vendor=old.vendor,
                    fetched_at=fetched_at,
                    session_closed=b.close_ms <= now_ms,
                    quarantined=cand.quarantined,
                    gap=old.rows < want,
                    kept_existing=True,
                    fetched_rows=cand.fetched,
                )
            )
            continue
        need = required_bars(want, min_completeness)
        if len(cand.bars) < need:  # within the completeness tolerance a session is complete, not a gap
            remediation.append(
                {
                    **entry,
                    "session": day,
                    "vendor": cand.vendor,
                    "kind": "gap",
                    "detail": f"{len(cand.bars)} of {want} expected bars, "
                    f"below min_completeness {min_completeness:g} (at least {need}): partial",
                }
            )
        part = cand.bars
        checksum = bars_checksum(part)
        window_start_ms, window_end_ms = calendar.partition_window_ms(b.session)
        following = calendar.next_session(b.session)  # stored bars before it belong to no session: gone
        writes.append(
            PartitionWrite(
                symbol=symbol,
                interval=interval,
                session=b.session,
                window_start_ms=window_start_ms,
                window_end_ms=window_end_ms,
                bars=part,
                vendor=cand.vendor,
                expected_rows=want,
                checksum=checksum,
                strays_until_ms=calendar.partition_window_ms(following)[0] if following else None,
            )
        )
        results.append(
            PartitionResult(
                session=b.session,
                rows=len(part),
                expected_rows=want,
                first_bar=ts_iso(int(part["ts"].iloc[0])) if len(part) else None,
                last_bar=ts_iso(int(part["ts"].iloc[-1])) if len(part) else None,
                checksum=checksum,
                vendor=cand.vendor,
                fetched_at=fetched_at,
                session_closed=b.close_ms <= now_ms,
                quarantined=cand.quarantined,
                gap=gap,
                fetched_rows=cand.fetched,
            )
        )
    return writes, results
