"""Process identity: a process that ended is gone even while nobody has reaped it yet (a zombie
whose parent was killed stays one until init gets to it); a live one is not."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from marketcov_dagster.lib.processes import ProcessId, _boot_id, _start_time, is_gone


def test_a_live_process_is_not_gone_and_an_unreaped_one_is() -> None:
    child = subprocess.Popen(["sleep", "0.5"])
    start = _start_time(child.pid)
    assert start
    ident = ProcessId(socket.gethostname(), _boot_id(), child.pid, start)
    assert is_gone(ident) is False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # ended, but not waited for: a zombie
        state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            break
        time.sleep(0.05)
    assert state == "Z"
    assert is_gone(ident) is True
    child.wait()
    assert is_gone(ident) is True
    assert is_gone(ProcessId("another-host", "", 1, "1")) is None  # another machine: cannot tell
