"""Proven copies of the embedded warehouse: audit, backup, restore.

* ``audit`` re-reads every written partition of the given assets and compares its bars with the
  checksum recorded when it was written (the ``checksum_matches`` check, over the whole history):
  a partition whose bars were altered or are gone is a finding.
* ``backup`` takes a consistent online copy with SQLite's backup API (writers may keep writing),
  audits the copy and writes beside it a manifest of every partition's checksum; a copy that
  fails its audit is not kept.
* ``restore`` checks SQLite's full integrity check and every checksum of the manifest against the
  backup before anything is replaced; the replaced file is kept beside it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.verify import CHECKSUM_MATCHES, verify_partitions
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster.lib.warehouse.integrity import integrity_check

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1


class BackupError(Exception):
    """A backup or restore refused: the message says why; nothing was replaced."""


@dataclass(frozen=True)
class Finding:
    asset_key: str
    session: str
    problem: str


@dataclass(frozen=True)
class Audit:
    partitions: list[dict[str, Any]]  # asset_key, session, checksum (recorded), rows (written)
    findings: list[Finding]


def audit(wh: Warehouse, specs: Sequence[AssetSpecification], now: datetime | None = None) -> Audit:
    """Every written partition of ``specs`` re-read and compared with its recorded checksum."""
    partitions: list[dict[str, Any]] = []
    findings: list[Finding] = []
    for spec in specs:
        if spec.indicators:
            continue
        written = sorted(wh.written_sessions(spec.symbol, spec.interval, "0000-01-01", "9999-12-31"))
        if not written:
            continue
        outcomes = verify_partitions(
            warehouse=wh,
            calendar=get_calendar(spec.calendar),
            symbol=spec.symbol,
            interval=spec.interval,
            sessions=[datetime.fromisoformat(s).date() for s in written],
            min_completeness=spec.min_completeness,
            now=now,
        )
        for session, checks in sorted(outcomes.items()):
            check = next(c for c in checks if c.name == CHECKSUM_MATCHES)
            md = check.metadata
            partitions.append(
                {"asset_key": spec.key_str, "session": session, "checksum": md["recorded"], "rows": md["rows_written"]}
            )
            if not check.passed:
                problem = "its bars are gone" if md["rows_now"] == 0 else check.description
                findings.append(Finding(spec.key_str, session, problem))
    return Audit(partitions, findings)


def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def backup(source: Path, dest: Path, specs: Sequence[AssetSpecification], now: datetime | None = None) -> Audit:
    """Copy the warehouse file ``source`` to ``dest`` (new) with its manifest; the copy's audit."""
    if dest.exists() or manifest_path(dest).exists():
        raise BackupError(f"{dest} already exists: give a new file name")
    if not dest.parent.is_dir():
        raise BackupError(f"the directory {dest.parent} does not exist")
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        _copy(source, partial)
        problems = integrity_check(partial)
        if problems:
            raise BackupError(f"the copy of {source} fails SQLite's integrity check: {problems[0]}")
        result = _audit_file(partial, specs, now)
        if result.findings:
            f = result.findings[0]
            raise BackupError(
                f"{len(result.findings)} partition(s) of {source} do not match their checksums "
                f"(first: {f.asset_key} {f.session}: {f.problem}); no backup was kept: run marketcov verify"
            )
        manifest = {
            "format": MANIFEST_FORMAT,
            "taken_at": (now or datetime.now(UTC)).isoformat(),
            "source": str(source),
            "partitions": result.partitions,
        }
        manifest_path(dest).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(partial, dest)
        return result
    finally:
        partial.unlink(missing_ok=True)


def restore(backup_file: Path, target: Path, specs: Sequence[AssetSpecification], now: datetime | None = None) -> Path:
    """Replace the warehouse file ``target`` with ``backup_file`` once every check passes; the
    path the replaced file (with its WAL) was moved to."""
    manifest = _read_manifest(backup_file)
    problems = integrity_check(backup_file)
    if problems:
        raise BackupError(f"{backup_file} fails SQLite's integrity check: {problems[0]}; nothing was replaced")
    staged = target.with_name(f".{target.name}.restoring")
    try:
        _copy(backup_file, staged)  # through SQLite: what a reader of the backup sees, its WAL included
        result = _audit_file(staged, specs, now)
        found = {(p["asset_key"], p["session"]): p["checksum"] for p in result.partitions}
        wrong = [
            f"{p['asset_key']} {p['session']}"
            for p in manifest["partitions"]
            if found.get((p["asset_key"], p["session"])) != p["checksum"]
        ]
        wrong += [f"{f.asset_key} {f.session}: {f.problem}" for f in result.findings]
        if wrong:
            raise BackupError(
                f"{len(wrong)} partition(s) of {backup_file} do not match its manifest (first: {wrong[0]}); "
                "nothing was replaced"
            )
        aside = target.with_name(f"{target.name}.replaced-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        if target.exists():
            for suffix in ("-wal", "-shm"):
                extra = target.with_name(target.name + suffix)
                if extra.exists():
                    os.replace(extra, aside.with_name(aside.name + suffix))
            os.replace(target, aside)
        os.replace(staged, target)
        return aside
    finally:
        staged.unlink(missing_ok=True)


def _copy(source: Path, dest: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)  # page by page, consistent while others write
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: no -wal beside it
    finally:
        dst.close()
        src.close()


def _audit_file(path: Path, specs: Sequence[AssetSpecification], now: datetime | None) -> Audit:
    wh = Warehouse(f"sqlite:///{path}")
    try:
        return audit(wh, specs, now)
    finally:
        wh.dispose()


def _read_manifest(backup_file: Path) -> dict[str, Any]:
    path = manifest_path(backup_file)
    if not backup_file.is_file():
        raise BackupError(f"{backup_file} is not a file")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: a backup without its manifest cannot be proven") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BackupError(f"{path} is not a valid manifest: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(f"{path} is not a marketcov backup manifest (format {MANIFEST_FORMAT})")
    if not isinstance(manifest.get("partitions"), list):
        raise BackupError(f"{path} lists no partitions")
    return manifest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
