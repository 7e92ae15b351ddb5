"""Vendor state shared by every process: token buckets, Retry-After blocks and health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import vendor_limits, vendor_status

HEALTHY = "ok"
VENDOR_STATES = (
    "ok",
    "rate_limited",
    "banned",
    "unavailable",
    "restricted",
    "auth_failing",
    "bad_payload",
    "no_data",  # answered, but with nothing for sessions that traded (unknown symbol, or no coverage)
)


class VendorStateStore(WarehouseCore):
    def _vendor_row(self, conn: Connection, table: sa.Table, defaults: dict[str, Any]) -> dict[str, Any]:
        """Lock (or create) one vendor's row for the rest of the transaction."""
        conn.execute(self.insert_ignore(table, defaults, "vendor"))
        q = sa.select(table).where(table.c.vendor == defaults["vendor"])
        if self.dialect == "postgresql":
            q = q.with_for_update()
        return dict(conn.execute(q).mappings().one())

    def take_vendor_token(self, vendor: str, per_minute: float, burst: int, now: float) -> float:
        """Take one request slot from ``vendor``'s shared token bucket.

        Returns 0.0 when the caller may send now, else the seconds to wait before asking again
        (the bucket is empty, or the vendor is blocked by a Retry-After or a ban)."""
        with self.begin() as conn:
            row = self._vendor_row(
                conn,
                vendor_limits,
                {
                    "vendor": vendor,
                    "tokens": float(burst),
                    "updated_at": now,
                    "blocked_until": 0.0,
                    "blocked_reason": "",
                },
            )
            if row["blocked_until"] > now:
                return float(row["blocked_until"] - now)
            tokens = min(float(burst), row["tokens"] + max(0.0, now - row["updated_at"]) * per_minute / 60.0)
            wait = 0.0
            if tokens >= 1.0 - 1e-6:  # one who slept the exact wait is not sent round again by float rounding
                tokens = max(0.0, tokens - 1.0)
            else:
                wait = (1.0 - tokens) * 60.0 / per_minute
            conn.execute(
                vendor_limits.update().where(vendor_limits.c.vendor == vendor).values(tokens=tokens, updated_at=now)
            )
            return wait

    def block_vendor(self, vendor: str, until: float, reason: str) -> None:
        """No process sends ``vendor`` a request before ``until`` (epoch seconds)."""
        with self.begin() as conn:
            row = self._vendor_row(
                conn,
                vendor_limits,
                {"vendor": vendor, "tokens": 0.0, "updated_at": until, "blocked_until": 0.0, "blocked_reason": ""},
            )
            if until > row["blocked_until"]:
                conn.execute(
                    vendor_limits.update()
                    .where(vendor_limits.c.vendor == vendor)
                    .values(blocked_until=until, blocked_reason=reason)
                )

    def vendor_block(self, vendor: str) -> tuple[float, str]:
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(vendor_limits.c.blocked_until, vendor_limits.c.blocked_reason).where(
                    vendor_limits.c.vendor == vendor
                )
            ).first()
        return (float(r[0]), str(r[1])) if r else (0.0, "")

    def record_vendor_call(
        self, vendor: str, state: str, detail: str, http_status: int | None = None, *, count_call: bool = True
    ) -> None:
        """Record the outcome of one real call; ``state`` is one of ``VENDOR_STATES``. With
        ``count_call=False`` it revises the state of a call already counted (judged later)."""
        if state not in VENDOR_STATES:
            raise ValueError(f"unknown vendor state {state!r}")
        now = datetime.now(UTC)
        with self.begin() as conn:
            row = self._vendor_row(
                conn,
                vendor_status,
                {
                    "vendor": vendor,
                    "state": state,
                    "detail": detail,
                    "since": now,
                    "last_call_at": now,
                    "calls": 0,
                    "failures": 0,
                    "rate_limited": 0,
                },
            )
            ok = state == HEALTHY
            values: dict[str, Any] = {
                "state": state,
                "detail": detail,
                "http_status": http_status,
                "last_call_at": now,
                "calls": row["calls"] + (1 if count_call else 0),
                "failures": row["failures"] + (0 if ok else 1),
                "rate_limited": row["rate_limited"] + (1 if state in ("rate_limited", "banned") else 0),
            }
            if row["state"] != state:
                values["since"] = now
            values["last_ok_at" if ok else "last_failure_at"] = now
            conn.execute(vendor_status.update().where(vendor_status.c.vendor == vendor).values(**values))

    def vendor_statuses(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(vendor_status).order_by(vendor_status.c.vendor)).mappings().all()
        return [dict(r) for r in rows]
