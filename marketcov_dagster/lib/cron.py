"""Checking a five-field cron expression (minute hour day-of-month month day-of-week) at config
load, so a bad one is refused with its reason rather than failing every run that builds the
schedule."""

from __future__ import annotations

import re

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
)
_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


def cron_error(expression: str) -> str | None:
    """Why ``expression`` is not a valid cron expression, or None when it is."""
    fields = expression.split()
    if len(fields) != 5:
        return f"{expression!r} has {len(fields)} field(s); a cron expression has 5 (minute hour day month weekday)"
    for text, (name, lo, hi, names) in zip(fields, _FIELDS, strict=True):
        for item in text.lower().split(","):
            m = _ITEM.match(item)
            if not m:
                return f"{expression!r}: {name} field {text!r} is not a number, range, list, * or step"
            if m.group(2) is not None and int(m.group(2)) < 1:
                return f"{expression!r}: {name} step must be at least 1"
            if m.group(1) == "*":
                continue
            for part in m.group(1).split("-"):
                value = names.get(part, int(part) if part.isdigit() else None)
                if value is None or not lo <= value <= hi:
                    return f"{expression!r}: {name} {part!r} is outside {lo}-{hi}"
    return None
