"""The embedded default's event log: Dagster's consolidated SQLite event log (one file, WAL), with
one connection pool held per process instead of a new engine and connection per event.

Dagster's SQLite storages open, configure and close a connection for every event they store (and
another to look up whether a table exists), and compile their statements again each time; with
three check evaluations per partition that churn is most of a backfill on the embedded default
(BENCHMARKS.md, section 2). This subclass changes only how a connection is obtained
(``_connect``, the one method every read and write of ``ConsolidatedSqliteEventLogStorage`` goes
through), its schema probes (``has_table``, ``_has_asset_key_col_on_connection``: answered once
per process) and how a live run's log is watched (WAL writes land in the ``-wal`` file, which
Dagster's watcher does not follow). Tables, migrations, concurrency pools and every per-partition
check result are Dagster's own.

``synchronous=NORMAL`` (WAL): an application crash loses nothing; an OS crash or power loss can
lose the last events committed, never corrupt the file. Production runs on PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

import sqlalchemy as sa
from dagster._config import Field, StringSource
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from watchdog.events import FileSystemEvent, PatternMatchingEventHandler
from watchdog.observers import Observer

POOL_SIZE = 4  # connections kept per process; a burst may open up to POOL_OVERFLOW more
POOL_OVERFLOW = 8


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class HeldSqliteEventLogStorage(ConsolidatedSqliteEventLogStorage):
    """``ConsolidatedSqliteEventLogStorage`` whose connections come from one pool per process.

    The events go to ``history/event_log.db`` in the folder the instance is loaded from (whatever
    loads it: the CLI, the UI, the daemon, a run worker), or under ``dagster_home`` when the
    config gives one. In ``dagster.yaml``::

        event_log_storage:
          module: marketcov_dagster.instance.event_log
          class: HeldSqliteEventLogStorage
    """

    def __init__(self, dagster_home: str | None = None, inst_data: ConfigurableClassData | None = None) -> None:
        self._tables: set[str] = set()  # tables and columns known to exist (migrations add, never drop)
        self._engine_lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._engine_pid: int | None = None
        self._inst_data = inst_data
        self._opened = False
        if dagster_home is not None:
            self._open(dagster_home)
        else:  # the instance's folder is known once the instance registers itself
            self._instance_weakref = None

    def _open(self, dagster_home: str) -> None:
        super().__init__(os.path.join(dagster_home, "history"), self._inst_data)
        self._opened = True

    def register_instance(self, instance: Any) -> None:
        if not self._opened:
            self._open(instance.root_directory)
        super().register_instance(instance)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"dagster_home": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    def held_engine(self) -> sa.Engine:
        """This process's engine (a forked child makes its own: pooled connections are not shared)."""
        with self._engine_lock:
            if self._engine is None or self._engine_pid != os.getpid():
                engine = sa.create_engine(
                    self._conn_string,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                    pool_size=POOL_SIZE,
                    max_overflow=POOL_OVERFLOW,
                )
                sa.event.listen(engine, "connect", _pragmas)
                self._engine, self._engine_pid = engine, os.getpid()
            return self._engine

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:  # type: ignore[override]
        with self.held_engine().connect() as conn, conn.begin():
            yield conn

    def _known(self, name: str, probe: Callable[[], bool]) -> bool:
        """``probe()`` once per process while it answers True: migrations add tables and columns,
        never drop them; a missing one is asked again (a migration may add it)."""
        if name in self._tables:
            return True
        found = bool(probe())
        if found:
            self._tables.add(name)
        return found

    def has_table(self, table_name: str) -> bool:
        """Dagster asks this for every check evaluation and tag it stores (``supports_asset_checks``),
        and its SQLite storages answer with a new engine and a schema query each time (with the
        column probe below, a third of a backfill's wall time). Here it is asked once per process
        and table, on the held pool."""

        def probe() -> bool:
            with self.held_engine().connect() as conn:
                return bool(conn.dialect.has_table(conn, table_name))

        return self._known(table_name, probe)

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        """Likewise the column probe Dagster makes for every asset event it stores."""
        return self._known(
            f"asset_keys.{column_name}",
            lambda: super(HeldSqliteEventLogStorage, self)._has_asset_key_col_on_connection(conn, column_name),  # type: ignore[no-untyped-call]
        )

    def watch(self, run_id: str, cursor: str | None, callback: Any) -> None:
        if not self._obs:
            observer = Observer()
            observer.start()
            observer.schedule(_LogWatcher(self), self._base_dir, recursive=True)
            self._obs = observer  # type: ignore[assignment]
        self._watchers[run_id][callback] = cursor

    def dispose(self) -> None:
        if not self._opened:  # never registered with an instance: nothing was opened
            return
        super().dispose()  # type: ignore[no-untyped-call]
        with self._engine_lock:
            if self._engine is not None and self._engine_pid == os.getpid():
                self._engine.dispose()
            self._engine = None


class _LogWatcher(PatternMatchingEventHandler):
    """Wakes the storage's watchers when the event log file or its write-ahead log changes."""

    def __init__(self, storage: HeldSqliteEventLogStorage) -> None:
        path = str(storage.get_db_path())  # type: ignore[no-untyped-call]
        super().__init__(patterns=[path, f"{path}-wal"])
        self._storage = storage

    def on_modified(self, event: FileSystemEvent) -> None:
        self._storage.on_modified()  # type: ignore[no-untyped-call]
