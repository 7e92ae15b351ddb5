"""A small persistent cache of per-partition row counts read from materialization metadata.

It remembers, per asset, the event-log storage id it has read up to, so coverage reads only new
materialization events instead of re-scanning the whole history. Stored as a SQLite file next
to the Dagster instance (it is a cache: deleting it only costs one full read).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


class MetadataCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS partition_rows (
                asset_key TEXT NOT NULL, partition TEXT NOT NULL,
                storage_id INTEGER NOT NULL, rows INTEGER NOT NULL,
                PRIMARY KEY (asset_key, partition));
            CREATE TABLE IF NOT EXISTS cursors (
                asset_key TEXT PRIMARY KEY, storage_id INTEGER NOT NULL);
            """
        )

    def close(self) -> None:
        self._conn.close()

    def cursor(self, asset_key: str) -> int | None:
        row = self._conn.execute("SELECT storage_id FROM cursors WHERE asset_key = ?", (asset_key,)).fetchone()
        return int(row[0]) if row else None

    def rows(self, asset_key: str) -> dict[str, int]:
        return {
            p: int(r)
            for p, r in self._conn.execute(
                "SELECT partition, rows FROM partition_rows WHERE asset_key = ?", (asset_key,)
            )
        }

    def update(self, asset_key: str, entries: Iterable[tuple[str, int, int]], cursor: int | None) -> None:
        """Store ``(partition, storage_id, rows)`` entries; newer storage ids win."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                """INSERT INTO partition_rows (asset_key, partition, storage_id, rows)
                   VALUES (?, ?, ?, ?)
                   ON CONFLICT (asset_key, partition) DO UPDATE
                   SET storage_id = excluded.storage_id, rows = excluded.rows
                   WHERE excluded.storage_id > partition_rows.storage_id""",
                [(asset_key, p, s, r) for p, s, r in entries],
            )
            if cursor is not None:
                self._conn.execute(
                    """INSERT INTO cursors (asset_key, storage_id) VALUES (?, ?)
                       ON CONFLICT (asset_key) DO UPDATE SET storage_id = MAX(storage_id, excluded.storage_id)""",
                    (asset_key, cursor),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
