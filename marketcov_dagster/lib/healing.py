"""Gap healing: which runs restore coverage, newest holes first, a bounded number per tick.

A hole is a missing or partial session inside an asset's window. Holes of one session across the
assets of one (calendar, interval) group become one run of that group's job over that session,
selecting only the assets that lack it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.universe import AssetSpecification


@dataclass(frozen=True)
class HealRun:
    calendar: str
    interval: str
    session: str
    asset_keys: tuple[str, ...]
    kind: str = "ohlcv"  # or "indicators": which of the group's jobs runs it

    @property
    def slot(self) -> tuple[str, str, str, str]:
        return (self.calendar, self.interval, self.session, self.kind)


def plan_healing(
    coverage: Sequence[tuple[AssetSpecification, AssetCoverage]],
    max_runs: int,
    in_flight: Collection[tuple[str, str, str, str]] = (),
) -> list[HealRun]:
    """At most ``max_runs`` runs, newest session first; slots (calendar, interval, session, kind)
    already being healed are skipped. A session of an asset computed from another (candles,
    indicators) waits while what it is computed from lacks that session too, and a weekly bar's
    session while its source lacks any session of that week: healing the source comes first, and
    the derived session then follows it (or the next tick heals it)."""
    gaps: dict[str, set[str]] = {spec.key_str: {*cov.missing, *cov.partial} for spec, cov in coverage}
    holes: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for spec, _ in coverage:
        upstream = gaps.get(spec.upstream_key_str or "", set())
        if spec.interval == "1w":  # a weekly bar is computed from every day of its week
            blocked = {_week(s) for s in upstream}
            waiting = {s for s in gaps[spec.key_str] if _week(s) in blocked}
        else:
            waiting = upstream
        for session in gaps[spec.key_str] - waiting:
            holes[(spec.calendar, spec.interval, session, spec.kind)].append(spec.key_str)
    ordered = sorted(holes, key=lambda k: (k[2], k[3] == "ohlcv", k[1], k[0]), reverse=True)
    runs = [HealRun(c, i, s, tuple(sorted(holes[(c, i, s, k)])), k) for c, i, s, k in ordered]
    return [r for r in runs if r.slot not in in_flight][: max(0, max_runs)]


def _week(session: str) -> tuple[int, int]:
    """The ISO (year, week) of a session: weeks run Monday to Sunday, as weekly bars do."""
    year, week, _ = date.fromisoformat(session).isocalendar()
    return year, week
