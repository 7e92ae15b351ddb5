"""Every JSON the CLI prints is strict (no NaN/Infinity) and every timestamp in it carries an
offset, on a SQLite warehouse as on PostgreSQL."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.e2e.conftest import base_env, marketcov

# an ISO 8601 date-time: must end in Z or +hh:mm/-hh:mm
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(?P<offset>Z|[+-]\d{2}:\d{2})?$")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_loads(text: str) -> Any:
    return json.loads(text, parse_constant=_refuse_constant)


def naive_timestamps(doc: Any, path: str = "$") -> list[str]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in naive_timestamps(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in naive_timestamps(v, f"{path}[{i}]")]
    if isinstance(doc, str):
        m = DATETIME.match(doc)
        if m and not m.group("offset"):
            return [f"{path}={doc}"]
    return []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_json_outputs_are_strict_with_offsets(home: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    env = base_env(home, url)
    wh = Warehouse(url or f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    wh.log_remediation(
        [
            # a vendor error for a whole range has no session: NaN in pandas, null in JSON
            {"symbol": "AAPL", "interval": "1m", "run_id": "r1", "vendor": "alpaca", "kind": "vendor_error"}
            | {"detail": "alpaca: HTTP 503"},
            {"symbol": "AAPL", "interval": "1m", "run_id": "r1", "vendor": "alpaca", "kind": "gap"}
            | {"session": "2024-11-29", "detail": "200 of 210 expected bars"},
        ]
    )
    wh.record_vendor_call("alpaca", "unavailable", "bars AAPL: HTTP 503", 503)
    wh.block_vendor("alpaca", time.time() + 3600, "HTTP 429 Retry-After 3600s")
    wh.dispose()

    docs = {}
    for command in (["remediation"], ["vendors"], ["status"], ["coverage", "--intervals", "1d"]):
        out = marketcov([*command, "--format", "json"], env)
        assert out.returncode == 0, (command, out.stderr[-2000:])
        docs[command[0]] = strict_loads(out.stdout)
        assert naive_timestamps(docs[command[0]]) == [], command

    rows = docs["remediation"]
    assert {r["kind"]: r["session"] for r in rows} == {"vendor_error": None, "gap": "2024-11-29"}
    assert all(DATETIME.match(r["created_at"]) for r in rows), rows
    alpaca = next(v for v in docs["vendors"] if v["vendor"] == "alpaca")
    assert alpaca["blocked_until"] is not None and alpaca["since"].endswith("+00:00")


def test_an_expired_block_is_not_shown(home: Path) -> None:
    env = base_env(home, None)
    wh = Warehouse(f"sqlite:///{home / 'marketcov_warehouse.sqlite'}")
    wh.record_vendor_call("polygon", "rate_limited", "aggs AAPL minute: HTTP 429", 429)
    wh.block_vendor("polygon", time.time() - 5, "HTTP 429 Retry-After 60s")
    wh.dispose()
    doc = strict_loads(marketcov(["vendors", "--format", "json"], env).stdout)
    assert doc[0]["blocked_until"] is None and doc[0]["blocked_reason"] is None
