"""Strict JSON for every machine-readable output: NaN and infinities become ``null`` (a parser
that follows RFC 8259 rejects them), timestamps are ISO 8601 with an offset (a naive datetime,
as SQLite returns them, is UTC by this project's convention), numpy and pandas scalars become
plain numbers."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd


def plain(value: Any) -> Any:
    """``value`` with every nested item turned into a strict-JSON-safe Python value."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, datetime):  # pandas Timestamp included
        ts = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return ts.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    return str(value)


def dumps(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text (``allow_nan=False`` guards the conversion)."""
    return json.dumps(plain(value), indent=indent, allow_nan=False)
