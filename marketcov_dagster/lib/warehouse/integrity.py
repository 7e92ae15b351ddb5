"""Is an embedded SQLite warehouse file whole? Checked before anything opens it.

``file_problem`` reads only the 100-byte header and the file's size (a truncated, zeroed or
foreign file is found at once, whatever its size), before a process connects; ``stat_problem``
(size alone) is all a connected process may check, since closing a descriptor of the file would
release its SQLite locks. ``quick_check`` and ``integrity_check`` run SQLite's own checks over
every page, through SQLite (``marketcov verify`` runs the full one).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

MAGIC = b"SQLite format 3\x00"


def fix_hint(path: Path) -> str:
    return (
        f"restore a backup (marketcov restore BACKUP) or move {path.name} aside and refill it "
        "(marketcov backfill --missing); nothing was written"
    )


def stat_problem(path: Path) -> str | None:
    """What the file's size alone says (an emptied file), without opening it: closing any
    descriptor of a SQLite file releases every POSIX lock this process holds on it, so a process
    that may already have connections open (a run, the API) must not read the header itself.
    ``file_problem`` is for a process's first look, before it connects."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return "is empty (0 bytes): its tables and bars are gone" if size == 0 else None


def file_problem(path: Path) -> str | None:
    """What is wrong with the SQLite file at ``path`` from its header and size; None when it
    looks whole (or does not exist: a new warehouse is created there). Reads the file: call it
    only before this process connects to it (``stat_problem``)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if size == 0:
        return "is empty (0 bytes): its tables and bars are gone"
    if len(header) < 100 or not header.startswith(MAGIC):
        return "is not a SQLite database (its header is damaged or it is another kind of file)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    change_counter = int.from_bytes(header[24:28], "big")
    if page_size < 512 or page_size & (page_size - 1):
        return f"has a damaged header (page size {page_size})"
    if pages and valid_for == change_counter and size < pages * page_size:
        return f"is truncated: {size:,} bytes of the {pages * page_size:,} its header records"
    return None


def _pragma(path: Path, pragma: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = [" ".join(str(r[0]).replace("*** in database main ***", "").split()) for r in conn.execute(pragma)]
        return [r for r in rows if r]
    except sqlite3.DatabaseError as e:
        return [str(e)]
    finally:
        conn.close()


def quick_check(path: Path) -> list[str]:
    """SQLite's ``PRAGMA quick_check`` (every page, not the indexes' agreement): [] when whole."""
    out = _pragma(path, "PRAGMA quick_check(20)")
    return [] if out == ["ok"] else out


def integrity_check(path: Path) -> list[str]:
    """SQLite's full ``PRAGMA integrity_check`` (indexes included): [] when whole."""
    out = _pragma(path, "PRAGMA integrity_check(100)")
    return [] if out == ["ok"] else out


def damage(path: Path, thorough: bool = False) -> str | None:
    """One line naming what is wrong with the warehouse file, or None when it is whole."""
    problem = file_problem(path)
    if problem is None and path.exists():
        found = (integrity_check if thorough else quick_check)(path)
        problem = f"fails SQLite's {'integrity' if thorough else 'quick'} check: {found[0]}" if found else None
    return f"warehouse {path} {problem}; {fix_hint(path)}" if problem else None
