"""Gap healing: which runs restore coverage, newest holes first, a bounded number per tick.

A hole is a missing or partial session inside an asset's window. Holes of one session across the
assets of one (calendar, interval) group become one run of that group's job over that session,
selecting only the assets that lack it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from marketcov_dagster.lib.coverage import AssetCoverage
from marketcov_dagster.lib.universe import AssetSpecification


@dataclass(frozen=True)
class HealRun:
    calendar: str
    interval: str
    session: str
    asset_keys: tuple[str, ...]


def plan_healing(
    coverage: Sequence[tuple[AssetSpecification, AssetCoverage]],
    max_runs: int,
    in_flight: Collection[tuple[str, str, str]] = (),
) -> list[HealRun]:
    """At most ``max_runs`` runs, newest session first; (calendar, interval, session) triples
    already being healed are skipped."""
    holes: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for spec, cov in coverage:
        for session in (*cov.missing, *cov.partial):
            holes[(spec.calendar, spec.interval, session)].append(spec.key_str)
    ordered = sorted(holes, key=lambda k: (k[2], k[1], k[0]), reverse=True)
    runs = [HealRun(c, i, s, tuple(sorted(holes[(c, i, s)]))) for c, i, s in ordered if (c, i, s) not in in_flight]
    return runs[: max(0, max_runs)]
