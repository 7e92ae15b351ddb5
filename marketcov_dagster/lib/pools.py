"""Dagster concurrency pools as plain data: who holds each pool's slots, who waits, and the one
line that says so.

A pool (``vendor_<name>``) caps the steps that call one vendor at once. A step that finds every
slot held waits, silently in Dagster's step scheduler; these describe the wait so that the
``marketcov backfill`` output, ``marketcov status`` and ``/api/ops`` name the runs holding it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Slot:
    """One step of one run in a pool: holding a slot, or waiting for one since ``since``."""

    run_id: str
    step_key: str
    run_status: str  # the run's Dagster status (STARTED, FAILURE, ...), or MISSING when deleted
    since: datetime | None = None


@dataclass(frozen=True)
class PoolState:
    pool: str
    limit: int | None  # None: no limit set
    held: tuple[Slot, ...]
    waiting: tuple[Slot, ...]

    @property
    def stuck(self) -> tuple[Slot, ...]:
        """Slots held or waited for by runs that have finished: nothing frees them but a release."""
        return tuple(s for s in (*self.held, *self.waiting) if s.run_status in FINISHED)

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "limit": self.limit,
            "held": len(self.held),
            "waiting": len(self.waiting),
            "holders": [_slot_json(s) for s in self.held],
            "waiters": [_slot_json(s) for s in self.waiting],
        }


FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED", "MISSING"})


def _slot_json(s: Slot) -> dict[str, Any]:
    return {
        "run_id": s.run_id,
        "step_key": s.step_key,
        "run_status": s.run_status,
        "since": s.since.isoformat() if s.since else None,
    }


def holders_text(state: PoolState, exclude: Iterable[str] = ()) -> str:
    """``2 of 2 held by runs 1a2b3c4d (STARTED), 5e6f7a8b (STARTED)``."""
    skip = set(exclude)
    runs: dict[str, str] = {}
    for s in state.held:
        if s.run_id not in skip:
            runs.setdefault(s.run_id, s.run_status)
    limit = "no limit" if state.limit is None else f"{len(state.held)} of {state.limit} held"
    if not runs:
        return limit
    who = ", ".join(f"{r[:8]} ({status})" for r, status in sorted(runs.items()))
    return f"{limit} by run{'s' if len(runs) > 1 else ''} {who}"


def waits_of(states: Iterable[PoolState], run_ids: Iterable[str]) -> dict[tuple[str, str], PoolState]:
    """(run id, pool) -> the pool's state, for every given run with a step waiting in a pool."""
    wanted = set(run_ids)
    out: dict[tuple[str, str], PoolState] = {}
    for state in states:
        for s in state.waiting:
            if s.run_id in wanted:
                out[(s.run_id, state.pool)] = state
    return out


def wait_line(run_id: str, state: PoolState) -> str:
    return f"run {run_id[:8]} waits for a slot in pool {state.pool} ({holders_text(state, exclude=[run_id])})"


def to_text(states: Iterable[PoolState]) -> list[str]:
    """One line per pool in use, for ``marketcov status``."""
    lines = []
    for state in states:
        if not state.held and not state.waiting:
            continue
        waiting = f"; {len(state.waiting)} step(s) waiting" if state.waiting else ""
        lines.append(f"pool {state.pool}: {holders_text(state)}{waiting}")
    return lines


def statuses_json(states: Iterable[PoolState]) -> list[dict[str, Any]]:
    return [s.to_json() for s in states]


def build_state(
    pool: str,
    limit: int | None,
    claimed: Iterable[tuple[str, str]],
    pending: Iterable[tuple[str, str, datetime, bool]],
    run_status: Mapping[str, str],
) -> PoolState:
    """From Dagster's pool info: claimed (run id, step key), pending (run id, step key, enqueued
    at, assigned) and each run's status. Dagster's naive timestamps are UTC."""
    held = tuple(Slot(r, k, run_status.get(r, "MISSING")) for r, k in claimed)
    waiting = tuple(
        Slot(r, k, run_status.get(r, "MISSING"), since if since.tzinfo else since.replace(tzinfo=UTC))
        for r, k, since, assigned in pending
        if not assigned
    )
    return PoolState(pool, limit, held, waiting)
