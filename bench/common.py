"""Shared helpers: timing, the machine, and printing results as a markdown table."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def clean_env(home: Path, config: Path) -> dict[str, str]:
    """This environment without DAGSTER_*/MARKETCOV_* settings, pointed at ``home`` and ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "MARKETCOV_"))}
    env.update(DAGSTER_HOME=str(home), MARKETCOV_CONFIG=str(config))
    return env


def write_postgres_instance(home: Path, url: str) -> None:
    """A ``dagster.yaml`` in ``home`` that keeps runs, events and schedules in PostgreSQL."""
    (home / "dagster.yaml").write_text(
        f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {url}\n"
    )


def write_consolidated_instance(home: Path, held: bool = False) -> None:
    """A ``dagster.yaml`` in ``home``: SQLite, but every run's events in one event log file
    (Dagster's ``ConsolidatedSqliteEventLogStorage``) instead of one file per run plus an index;
    ``held``: the embedded default's storage, the same holding one connection pool per process
    (``marketcov_dagster/instance/event_log.py``, the project's ``dagster.yaml``)."""
    if held:
        storage = "  module: marketcov_dagster.instance.event_log\n  class: HeldSqliteEventLogStorage\n"
        config = f"    dagster_home: {home}\n"
    else:
        storage = "  module: dagster._core.storage.event_log\n  class: ConsolidatedSqliteEventLogStorage\n"
        config = f"    base_dir: {home / 'history'}\n"
    (home / "dagster.yaml").write_text(
        f"telemetry:\n  enabled: false\nevent_log_storage:\n{storage}  config:\n{config}"
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(n: int, fn: Callable[[], Any]) -> float:
    """The fastest of ``n`` runs: the least disturbed by a shared, noisy machine."""
    return min(timed(fn)[0] for _ in range(n))


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def report(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], command: str) -> None:
    print(f"\n### {title}\n")
    print(f"Machine: {machine()}  \nCommand: `{command}`\n")
    print(table(headers, rows))
