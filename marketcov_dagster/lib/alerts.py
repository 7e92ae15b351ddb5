"""Incidents and alert emails, kept in the warehouse so nothing is sent twice or lost.

* ``update_incidents`` turns one freshness evaluation into incident changes: a stale asset with no
  open incident opens one and queues exactly one alert; a fresh asset with an open incident
  resolves it and queues exactly one recovery mail. Repeated ticks change nothing else.
* Every email goes through the ``outbox`` table with a unique dedup key (``incident:7:stale``,
  ``run_failed:<run id>``, ...), so a restarted daemon, a repeated tick or two sensors racing
  cannot queue a message twice.
* ``flush_outbox`` sends pending messages; one it cannot send (SMTP down) stays pending and is
  retried on a later tick. A message is claimed before sending, so two flushers never both send it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from marketcov_dagster.lib.freshness import Freshness, human_minutes
from marketcov_dagster.lib.mailer import Mailer, MailError, SmtpSettings
from marketcov_dagster.lib.warehouse import Warehouse, incidents, outbox

DEFAULT_SUBJECT_PREFIX = "[marketcov]"
CLAIM_SECONDS = 300.0
KINDS = ("stale", "recovered", "check_failed", "run_failed", "lost")


@dataclass(frozen=True)
class AlertStyle:
    """How alerts look: the subject prefix and the Dagster UI base URL links point to."""

    ui_url: str = "http://127.0.0.1:3000"
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX

    def asset_url(self, asset_key: str) -> str:
        return f"{self.ui_url.rstrip('/')}/assets/{asset_key}"

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"


def _fmt_duration(delta: timedelta) -> str:
    return human_minutes(delta.total_seconds() / 60)


def vendor_summary(statuses: Sequence[Mapping[str, Any]], vendors: Sequence[str]) -> str:
    """One line per vendor of the chain from ``Warehouse.vendor_statuses()``."""
    by_name = {s["vendor"]: s for s in statuses}
    lines = []
    for v in vendors:
        s = by_name.get(v)
        if s is None:
            lines.append(f"{v}: no calls recorded")
            continue
        http = f", HTTP {s['http_status']}" if s.get("http_status") else ""
        lines.append(f"{v}: {s['state']}{http} since {s['since']:%Y-%m-%d %H:%M} UTC ({s['detail']})")
    return "\n".join(lines)


# ---- incidents ------------------------------------------------------------------------------
@dataclass
class IncidentChanges:
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    still_open: list[int] = field(default_factory=list)


def _stale_mail(incident_id: int, f: Freshness, vendors: str, style: AlertStyle, now: datetime) -> tuple[str, str]:
    subject = (
        f"{style.subject_prefix} STALE {f.symbol} {f.interval}: {f.describe_lag()} behind (incident #{incident_id})"
    )
    body = "\n".join(
        [
            f"{f.symbol} {f.interval} bars are stale: the newest stored bar trails the calendar by "
            f"{f.describe_lag()} (threshold {f.threshold_minutes:.0f} min).",
            "",
            f"Incident:        #{incident_id}",
            f"Asset:           {f.asset_key}",
            f"Symbol:          {f.symbol}",
            f"Interval:        {f.interval}",
            f"Calendar:        {f.calendar}",
            f"Lag:             {f.describe_lag()}",
            f"Newest bar end:  {f.latest_end or 'none'}",
            f"Expected by now: {f.expected_end}",
            f"Detected at:     {now.isoformat()}",
            "",
            "Vendor status:",
            vendors,
            "",
            f"Open in Dagster: {style.asset_url(f.asset_key)}",
            "",
            "One recovery mail follows when the data catches up; no further mail is sent meanwhile.",
        ]
    )
    return subject, body


def _recovery_mail(row: Mapping[str, Any], f: Freshness, style: AlertStyle, now: datetime) -> tuple[str, str]:
    duration = _fmt_duration(now - row["opened_at"])
    worst = human_minutes(row["max_lag_minutes"] or 0.0)
    # the incident opened when the lag was detected; the data may have been behind long before
    subject = (
        f"{style.subject_prefix} RECOVERED {f.symbol} {f.interval} "
        f"(incident #{row['id']}, data up to {worst} behind, open for {duration})"
    )
    body = "\n".join(
        [
            f"{f.symbol} {f.interval} bars are fresh again; incident #{row['id']} is resolved.",
            "",
            f"Incident:        #{row['id']}",
            f"Asset:           {f.asset_key}",
            f"Opened:          {row['opened_at'].isoformat()}",
            f"Resolved:        {now.isoformat()}",
            f"Incident open:   {duration} (from detection to recovery)",
            f"Worst lag:       {worst} (how far the data was behind)",
            f"Lag now:         {f.describe_lag()}",
            f"Newest bar end:  {f.latest_end}",
            "",
            f"Open in Dagster: {style.asset_url(f.asset_key)}",
        ]
    )
    return subject, body


def _as_utc(row: Mapping[Any, Any]) -> dict[str, Any]:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v for k, v in row.items()}


def update_incidents(
    warehouse: Warehouse,
    results: Sequence[Freshness],
    vendors_by_asset: Mapping[str, Sequence[str]],
    style: AlertStyle,
    now: datetime | None = None,
) -> IncidentChanges:
    """Apply one freshness evaluation to the incidents, queueing alert and recovery mails."""
    now = (now or datetime.now(UTC)).astimezone(UTC)  # SQLite keeps no offset: store UTC only
    statuses: list[dict[str, Any]] | None = None  # read only when an alert is written
    changes = IncidentChanges()
    with warehouse.begin() as conn:
        if warehouse.dialect == "postgresql":  # one evaluator at a time
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('marketcov_incidents'))"))
        open_rows = {
            r["asset_key"]: _as_utc(r)
            for r in conn.execute(sa.select(incidents).where(incidents.c.resolved_at.is_(None))).mappings()
        }
        for f in results:
            row = open_rows.get(f.asset_key)
            if f.no_data:
                continue  # never had data: reported by status as "no data yet", never mailed as lag
            if f.stale and row is None:
                inserted = conn.execute(
                    incidents.insert().values(
                        asset_key=f.asset_key,
                        symbol=f.symbol,
                        interval=f.interval,
                        opened_at=now,
                        lag_minutes=f.lag_minutes,
                        max_lag_minutes=f.lag_minutes,
                        last_lag_minutes=f.lag_minutes,
                        last_checked_at=now,
                    )
                ).inserted_primary_key
                assert inserted is not None
                incident_id = int(inserted[0])
                statuses = warehouse.vendor_statuses() if statuses is None else statuses
                vendors = vendor_summary(statuses, vendors_by_asset.get(f.asset_key, ()))
                subject, body = _stale_mail(incident_id, f, vendors, style, now)
                enqueue(warehouse, f"incident:{incident_id}:stale", "stale", subject, body, incident_id, conn=conn)
                changes.opened.append(incident_id)
            elif f.stale and row is not None:
                worst = max(row["max_lag_minutes"] or 0.0, f.lag_minutes or 0.0)
                conn.execute(
                    incidents.update()
                    .where(incidents.c.id == row["id"])
                    .values(last_lag_minutes=f.lag_minutes, max_lag_minutes=worst, last_checked_at=now)
                )
                changes.still_open.append(row["id"])
            elif row is not None:
                conn.execute(
                    incidents.update()
                    .where(incidents.c.id == row["id"])
                    .values(last_lag_minutes=f.lag_minutes, last_checked_at=now, resolved_at=now)
                )
                subject, body = _recovery_mail(row, f, style, now)
                enqueue(warehouse, f"incident:{row['id']}:recovered", "recovered", subject, body, row["id"], conn=conn)
                changes.resolved.append(row["id"])
    return changes


def list_incidents(warehouse: Warehouse, open_only: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
    """Incidents, newest first."""
    return _newest_first(warehouse, incidents, incidents.c.resolved_at.is_(None) if open_only else None, limit)


def _newest_first(
    warehouse: Warehouse, table: sa.Table, where: sa.ColumnElement[bool] | None, limit: int | None
) -> list[dict[str, Any]]:
    q = sa.select(table).order_by(table.c.id.desc())
    if where is not None:
        q = q.where(where)
    if limit:
        q = q.limit(limit)
    with warehouse.engine.connect() as conn:
        return [_as_utc(r) for r in conn.execute(q).mappings()]


# ---- the outbox -----------------------------------------------------------------------------
def enqueue(
    warehouse: Warehouse,
    dedup_key: str,
    kind: str,
    subject: str,
    body: str,
    incident_id: int | None = None,
    conn: sa.Connection | None = None,
) -> bool:
    """Queue one email unless a message with ``dedup_key`` was ever queued; True if queued now."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    row = {
        "dedup_key": dedup_key,
        "kind": kind,
        "incident_id": incident_id,
        "subject": subject,
        "body": body,
        "created_at": datetime.now(UTC),
        "attempts": 0,
        "claimed_until": 0.0,
    }
    stmt = warehouse.insert_ignore(outbox, row, "dedup_key")
    if conn is not None:
        return bool(conn.execute(stmt).rowcount)
    with warehouse.begin() as c:
        return bool(c.execute(stmt).rowcount)


@dataclass(frozen=True)
class FlushResult:
    sent: int
    failed: int
    pending: int
    error: str | None = None


def pending_count(warehouse: Warehouse) -> int:
    with warehouse.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))).scalar_one()
        )


def flush_outbox(warehouse: Warehouse, settings: SmtpSettings, limit: int = 100) -> FlushResult:
    """Send pending emails, oldest first. If SMTP is not configured nothing is sent and the
    messages stay pending; if the server cannot be reached the flush stops at the first failure
    (one timeout per tick, not one per message) and everything unsent stays pending."""
    if not settings.configured:
        return FlushResult(0, 0, pending_count(warehouse), "email is not configured")
    with warehouse.engine.connect() as conn:
        pending = conn.execute(
            sa.select(outbox.c.id, outbox.c.kind, outbox.c.incident_id, outbox.c.subject, outbox.c.body)
            .where(outbox.c.sent_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        ).all()
    sent = failed = 0
    error: str | None = None
    with Mailer(settings) as mailer:
        for msg_id, kind, incident_id, subject, body in pending:
            now = datetime.now(UTC)
            with warehouse.begin() as conn:
                claimed = conn.execute(
                    outbox.update()
                    .where(
                        outbox.c.id == msg_id,
                        outbox.c.sent_at.is_(None),
                        outbox.c.claimed_until < now.timestamp(),
                    )
                    .values(claimed_until=now.timestamp() + CLAIM_SECONDS, attempts=outbox.c.attempts + 1)
                ).rowcount
            if not claimed:  # another flusher is sending it
                continue
            try:
                mailer.send(subject, body, f"<outbox-{msg_id}@marketcov>")
            except MailError as e:
                error = str(e)
                with warehouse.begin() as conn:
                    release = outbox.update().where(outbox.c.id == msg_id)
                    conn.execute(release.values(claimed_until=0.0, last_error=error))
                failed += 1
                break
            with warehouse.begin() as conn:
                conn.execute(outbox.update().where(outbox.c.id == msg_id).values(sent_at=now, last_error=None))
                if incident_id is not None and kind in ("stale", "recovered"):
                    column = "alert_sent_at" if kind == "stale" else "recovery_sent_at"
                    conn.execute(incidents.update().where(incidents.c.id == incident_id).values({column: now}))
            sent += 1
    return FlushResult(sent, failed, pending_count(warehouse), error)


def list_outbox(warehouse: Warehouse, limit: int | None = None) -> list[dict[str, Any]]:
    """Queued and sent emails, newest first."""
    return _newest_first(warehouse, outbox, None, limit)


# ---- failures the run status alone does not reveal ---------------------------------------------
def check_failure_mail(
    style: AlertStyle,
    asset_key: str,
    check_name: str,
    run_id: str,
    job_name: str,
    partitions: Sequence[str],
    descriptions: Sequence[str],
) -> tuple[str, str]:
    where = f"{len(partitions)} partition(s)" if partitions else "the asset"
    subject = f"{style.subject_prefix} CHECK FAILED {asset_key} {check_name}: {where} (run {run_id[:8]})"
    shown = list(partitions[:50])
    lines = [
        f"The ERROR-severity check {check_name} failed on {asset_key}. A failed check does not fail the run.",
        "",
        f"Asset:      {asset_key}",
        f"Check:      {check_name}",
        f"Job:        {job_name}",
        f"Run:        {run_id}",
        f"Partitions: {', '.join(shown) or '-'}" + (f" (+{len(partitions) - 50} more)" if len(partitions) > 50 else ""),
        "",
        *[f"- {d}" for d in descriptions[:10]],
        "",
        f"Asset checks: {style.asset_url(asset_key)}?view=checks",
        f"Run:          {style.run_url(run_id)}",
    ]
    return subject, "\n".join(lines)


def lost_mail(style: AlertStyle, asset_key: str, sessions: Sequence[str]) -> tuple[str, str]:
    """Partitions once written whose bars are gone from the warehouse or no longer match their checksum."""
    subject = f"{style.subject_prefix} LOST {asset_key}: {len(sessions)} partition(s) gone or damaged"
    shown = list(sessions[:50])
    lines = [
        f"{len(sessions)} partition(s) of {asset_key} were written, and their bars are now gone from the "
        "warehouse or no longer match the checksum recorded when they were written.",
        "",
        f"Asset:      {asset_key}",
        f"Partitions: {', '.join(shown)}" + (f" (+{len(sessions) - 50} more)" if len(sessions) > 50 else ""),
        "",
        "Coverage counts them missing. marketcov backfill --missing (or the gap_healing sensor) fetches them "
        "again; marketcov verify checks every partition.",
        "",
        f"Partitions: {style.asset_url(asset_key)}?view=partitions",
    ]
    return subject, "\n".join(lines)


def lost_dedup_key(asset_key: str, sessions: Sequence[str]) -> str:
    """One email per asset and set of lost partitions: more lost later is a new email."""
    digest = hashlib.sha256(",".join(sorted(sessions)).encode()).hexdigest()[:16]
    return f"lost:{asset_key}:{digest}"


def run_failure_mail(style: AlertStyle, run_id: str, job_name: str, message: str) -> tuple[str, str]:
    subject = f"{style.subject_prefix} RUN FAILED {job_name} (run {run_id[:8]})"
    body = "\n".join(
        [
            f"The Dagster run {run_id} of {job_name} failed.",
            "",
            message.strip() or "(no failure message)",
            "",
            f"Run: {style.run_url(run_id)}",
        ]
    )
    return subject, body
