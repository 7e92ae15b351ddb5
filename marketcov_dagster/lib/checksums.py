"""SHA-256 checksums over a partition's bars in a documented canonical form.

Canonical form (version ``mcv1``): the ASCII bytes ``mcv1\\n``, then for every bar in ascending
``ts`` order one 48-byte record: ``ts`` as little-endian int64 (UTC epoch milliseconds), then
``open, high, low, close, volume`` as little-endian IEEE-754 float64, with ``-0.0`` written as
``0.0``. Float64 round-trips exactly through SQLite REAL and PostgreSQL DOUBLE PRECISION, so the
same bars give the same checksum whether hashed from the vendor batch or re-read from either
warehouse. NaN never reaches a checksum: validation rejects it first.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

CHECKSUM_VERSION = b"mcv1\n"
_RECORD = np.dtype(
    [("ts", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"), ("volume", "<f8")]
)


def canonical_bytes(df: pd.DataFrame) -> bytes:
    order = np.argsort(df["ts"].to_numpy(dtype=np.int64), kind="stable")
    rec = np.empty(len(df), dtype=_RECORD)
    rec["ts"] = df["ts"].to_numpy(dtype=np.int64)[order]
    for col in ("open", "high", "low", "close", "volume"):
        # adding 0.0 turns -0.0 into +0.0 and leaves every other value unchanged
        rec[col] = df[col].to_numpy(dtype=np.float64)[order] + 0.0
    return CHECKSUM_VERSION + rec.tobytes()


def bars_checksum(df: pd.DataFrame) -> str:
    """Hex SHA-256 of the canonical form of ``df`` (a canonical bar frame)."""
    return hashlib.sha256(canonical_bytes(df)).hexdigest()
