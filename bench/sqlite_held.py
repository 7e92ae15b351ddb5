"""Bench only, never shipped: Dagster's consolidated SQLite event log with one engine held per
process (WAL, synchronous=NORMAL) instead of a new engine per event, to measure how much of the
embedded default's backfill time is connection churn that only a storage subclass could remove."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage


class HeldSqliteEventLogStorage(ConsolidatedSqliteEventLogStorage):
    _engine: Any = None
    _pid: int | None = None

    def _held(self) -> sa.Engine:
        if self._engine is None or self._pid != os.getpid():
            engine = sa.create_engine(self._conn_string, connect_args={"timeout": 30}, pool_size=2, max_overflow=4)

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            self._engine, self._pid = engine, os.getpid()
        return self._engine  # type: ignore[no-any-return]

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:  # type: ignore[override]
        with self._held().connect() as conn, conn.begin():
            yield conn
