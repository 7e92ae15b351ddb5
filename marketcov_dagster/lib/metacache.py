"""A small persistent cache of per-partition row counts read from materialization metadata.

It remembers, per asset, the event-log storage id it has read up to, so coverage reads only new
materialization events instead of re-scanning the whole history. Stored as a SQLite file next
to the Dagster instance (it is a cache: deleting it only costs one full read).

Storage ids are handed out when an event is inserted, not when it commits: on PostgreSQL an
event with id 103 can become visible after one with id 105. So the cache does not trust its
newest id at once. It re-reads after a *settled* id: the newest id read whose event is at least
``SETTLE_SECONDS`` old (an event still invisible then would have been written within that time,
so it can only carry a later id). Entries are keyed by partition and newer storage ids win, so
re-reading is harmless, and once everything read is that old, nothing is re-read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

SETTLE_SECONDS = 60.0


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
            CREATE TABLE IF NOT EXISTS read_marks (
                asset_key TEXT PRIMARY KEY,
                newest INTEGER NOT NULL,      -- the newest storage id read
                settled INTEGER NOT NULL);    -- every event up to this id has been seen (-1: none)
            """
        )

    def close(self) -> None:
        self._conn.close()

    def marks(self, asset_key: str) -> tuple[int | None, int | None]:
        """(newest id read, settled id to re-read after); (None, None) before the first read."""
        row = self._conn.execute("SELECT newest, settled FROM read_marks WHERE asset_key = ?", (asset_key,)).fetchone()
        if row is None:
            return None, None
        return int(row[0]), (int(row[1]) if row[1] >= 0 else None)

    def rows(self, asset_key: str) -> dict[str, int]:
        return {
            p: int(r)
            for p, r in self._conn.execute(
                "SELECT partition, rows FROM partition_rows WHERE asset_key = ?", (asset_key,)
            )
        }

    def update(
        self, asset_key: str, entries: Iterable[tuple[str, int, int]], newest: int | None, settled: int | None
    ) -> None:
        """Store ``(partition, storage_id, rows)`` entries (newer storage ids win) and the read
        marks: the newest id read and the settled id (None: nothing settled yet)."""
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
            if newest is not None:
                self._conn.execute(
                    """INSERT INTO read_marks (asset_key, newest, settled) VALUES (?, ?, ?)
                       ON CONFLICT (asset_key) DO UPDATE
                       SET newest = MAX(newest, excluded.newest), settled = MAX(settled, excluded.settled)""",
                    (asset_key, newest, -1 if settled is None else settled),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
