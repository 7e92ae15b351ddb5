"""Is the process that runs a Dagster run still there? Plain Python, Linux ``/proc`` first.

A pid alone is not an identity (pids are reused), so a process is named by its pid and its start
time (``/proc/<pid>/stat`` field 22, clock ticks since boot) together with the host and boot id.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessId:
    host: str
    boot: str
    pid: int
    start: str  # "" where /proc is unavailable

    def as_tags(self, prefix: str) -> dict[str, str]:
        values = {"host": self.host, "boot": self.boot, "pid": str(self.pid), "pid_start": self.start}
        return {prefix + k: v for k, v in values.items()}

    @classmethod
    def from_tags(cls, tags: dict[str, str], prefix: str) -> ProcessId | None:
        try:
            return cls(
                tags[f"{prefix}host"], tags[f"{prefix}boot"], int(tags[f"{prefix}pid"]), tags[f"{prefix}pid_start"]
            )
        except (KeyError, ValueError):
            return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks, "" without /proc, None if no such process or it
    has ended (a zombie not yet reaped by whoever inherited it is gone too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def current() -> ProcessId:
    pid = os.getpid()
    return ProcessId(socket.gethostname(), _boot_id(), pid, _start_time(pid) or "")


def is_gone(p: ProcessId) -> bool | None:
    """True when the process has certainly ended; None when this host cannot tell (another host)."""
    if p.host != socket.gethostname():
        return None
    if p.boot and p.boot != _boot_id():
        return True  # the machine restarted since
    start = _start_time(p.pid)
    if start is None:
        return True
    if start and p.start:
        return start != p.start  # the pid now belongs to another process
    try:
        os.kill(p.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent ``parent_pid`` dies (a no-op
    elsewhere), so a worker never outlives a killed ``marketcov backfill``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)
