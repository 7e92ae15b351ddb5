"""Plain-text tables for the terminal: aligned columns under a rule; no value prints as Python
would (None is "-", times are ISO 8601 with their offset, to the second)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, str):
        try:  # stored timestamps arrive as ISO text with microseconds
            return datetime.fromisoformat(value).isoformat(timespec="seconds") if "T" in value else value
        except ValueError:
            return value
    return str(value)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    table = [list(columns), *([cell(v) for v in r] for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
