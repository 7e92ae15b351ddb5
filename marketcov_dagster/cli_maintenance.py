"""``marketcov verify``, ``backup`` and ``restore``: the warehouse checked whole, copied with
proof, and put back only once proven (``lib/backup.py``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from marketcov_dagster.lib.backup import BackupError, audit, backup, manifest_path, restore
from marketcov_dagster.lib.jsonout import dumps
from marketcov_dagster.lib.universe import AssetSpecification, ConfigError
from marketcov_dagster.lib.warehouse import WarehouseDamaged, default_warehouse_url, existing_or_empty, sqlite_path
from marketcov_dagster.lib.warehouse.integrity import damage


def maintenance(args: argparse.Namespace, specs: list[AssetSpecification]) -> int:
    try:
        if args.command == "verify":
            return _verify(specs, args.format)
        return _backup(specs, Path(args.path)) if args.command == "backup" else _restore(specs, Path(args.path))
    except BackupError as e:
        raise ConfigError(str(e)) from None


def _verify(specs: list[AssetSpecification], fmt: str) -> int:
    path = sqlite_path(default_warehouse_url())
    problem = damage(path, thorough=True) if path else None
    if problem:
        raise WarehouseDamaged(problem)
    wh = existing_or_empty()
    try:
        result = audit(wh, specs, datetime.now(UTC))
    finally:
        wh.dispose()
    findings = [{"asset_key": f.asset_key, "session": f.session, "problem": f.problem} for f in result.findings]
    if fmt == "json":
        print(dumps({"integrity": "ok", "partitions": len(result.partitions), "findings": findings}))
    else:
        for f in findings:
            print(f"{f['asset_key']} {f['session']}: {f['problem']}")
        where = f"warehouse {path}" if path else "the warehouse"
        print(
            f"{where}: integrity ok; {len(result.partitions)} partition(s) checked, {len(findings)} damaged or lost"
            + ("; refill them with marketcov backfill --missing" if findings else "")
        )
    return 1 if findings else 0


def _embedded() -> Path:
    path = sqlite_path(default_warehouse_url())
    if path is None:
        raise ConfigError(
            "backup and restore copy an embedded (SQLite) warehouse; back up PostgreSQL with pg_dump "
            "(docs/production.md)"
        )
    return path


def _backup(specs: list[AssetSpecification], dest: Path) -> int:
    source = _embedded()
    if not source.exists():
        raise ConfigError(f"warehouse {source} does not exist yet: nothing to back up")
    problem = damage(source)
    if problem:
        raise WarehouseDamaged(problem)
    result = backup(source, dest, specs)
    print(
        f"marketcov: backed up {source} to {dest} with {len(result.partitions)} partition checksum(s) "
        f"in {manifest_path(dest)}",
        file=sys.stderr,
    )
    return 0


def _restore(specs: list[AssetSpecification], source: Path) -> int:
    target = _embedded()
    aside = restore(source, target, specs)
    kept = f"; the replaced file is {aside}" if aside.exists() else ""
    print(f"marketcov: restored {target} from {source}, every checksum proven{kept}", file=sys.stderr)
    return 0
