"""Shared fixtures: real SQLite and PostgreSQL warehouses, a small universe."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from marketcov_dagster.lib.universe import Universe, parse_universe
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.smtp import SmtpServer

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def small_universe(**overrides: object) -> Universe:
    data: dict[str, object] = {
        "intervals": {"1d": {"window_days": 1095}, "1m": {"window_days": 730, "min_completeness": 0.98}},
        "asset_classes": {
            "us_equity": {
                "calendar": "XNYS",
                "vendors": ["synthetic"],
                "intervals": ["1d", "1m"],
                "symbols": ["AAPL", "BRK.B"],
            },
            "crypto": {"calendar": "24/7", "vendors": ["synthetic"], "intervals": ["1d", "1m"], "symbols": ["BTCUSDT"]},
        },
    }
    data.update(overrides)
    return parse_universe(data, "test")


def _postgres_reachable() -> str | None:
    try:
        eng = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(sa.text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as e:
        return f"no PostgreSQL at 127.0.0.1:5432 ({type(e).__name__}); PostgreSQL tests skipped"


@pytest.fixture
def sqlite_warehouse(tmp_path: Path) -> Iterator[Warehouse]:
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.sqlite'}")
    yield wh
    wh.dispose()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the local server, dropped afterwards; skips (or fails, in CI)
    when no server is reachable."""
    reason = _postgres_reachable()
    if reason:
        if os.environ.get("MARKETCOV_REQUIRE_POSTGRES"):
            pytest.fail(f"{reason}, but MARKETCOV_REQUIRE_POSTGRES is set (as in CI)")
        pytest.skip(reason)
    name = f"marketcov_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_dagster_url() -> Iterator[str]:
    """A second database, for Dagster's own storage (runs, event log, schedules)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_warehouse(postgres_url: str) -> Iterator[Warehouse]:
    wh = Warehouse(postgres_url)
    yield wh
    wh.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    name = "sqlite_warehouse" if request.param == "sqlite" else "postgres_warehouse"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()
