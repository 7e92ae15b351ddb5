"""Partitions a running ``marketcov backfill`` has taken, so a second one skips them.

Each backfill, under one lock, reads the claims of the backfills still running, leaves out the
partitions they hold, and writes its own claim (asset key -> sessions) before it starts any run;
it removes the claim when it ends. A claim whose process has ended (killed, crashed) is ignored
and removed, so a kill never blocks the partitions for ever. Files in the instance home:
``.marketcov-claims/<pid>-<start>.json``.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from marketcov_dagster.lib.processes import ProcessId, current, is_gone

FOLDER = ".marketcov-claims"


class ClaimBook:
    def __init__(self, home: Path) -> None:
        self.folder = home / FOLDER

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.folder.mkdir(exist_ok=True)
        with open(self.folder / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def taken(self) -> dict[str, set[str]]:
        """Asset key -> sessions claimed by backfills whose process is still running (call locked)."""
        out: dict[str, set[str]] = {}
        for path in sorted(self.folder.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                owner = ProcessId(**doc["owner"])
                partitions = doc["partitions"]
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)  # unreadable: a claim cut short, by a crash
                continue
            if is_gone(owner):
                path.unlink(missing_ok=True)
                continue
            for key, sessions in partitions.items():
                out.setdefault(key, set()).update(sessions)
        return out

    def add(self, partitions: Mapping[str, Sequence[str]]) -> Path:
        """Write this process's claim (call locked); the path to remove when done."""
        me = current()
        path = self.folder / f"{me.pid}-{me.start or 'x'}.json"
        doc = {"owner": asdict(me), "partitions": {k: sorted(v) for k, v in partitions.items()}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
        tmp.replace(path)
        return path

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
