"""``marketcov ui``: the Dagster UI and daemon on the same instance and universe as the CLI.

Starts ``dagster-webserver`` and ``dagster-daemon run`` (what ``dagster dev`` starts, without its
deprecation notice and without a code location of its own choosing) with the home the CLI
resolves, a workspace naming location ``marketcov``, and the universe config the CLI would read.
The children die with this process; Ctrl-C or SIGTERM stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from marketcov_dagster.lib.processes import die_with_parent
from marketcov_dagster.lib.universe import ConfigError

LOCATION = "marketcov"
STOP_GRACE_SECONDS = 20.0


def _workspace(home: Path) -> Path:
    """A workspace in the home, loading the package with the current folder as working directory."""
    path = home / "workspace.yaml"
    path.write_text(
        "# written by `marketcov ui` on every start\n"
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: marketcov_dagster.definitions\n"
        f"      location_name: {LOCATION}\n"
        f"      working_directory: {Path.cwd()}\n",
        encoding="utf-8",
    )
    return path


def _binary(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the same virtualenv as this command
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise ConfigError(f"{name} not found next to {sys.executable} or on PATH; install dagster-webserver")
    return found


def run_ui(home: Path, config: Path, host: str, port: int, daemon: bool) -> int:
    """Run the webserver (and the daemon) until one exits or this process is asked to stop."""
    workspace = _workspace(home)
    env = {**os.environ, "DAGSTER_HOME": str(home), "MARKETCOV_CONFIG": str(config.resolve())}
    commands = {"webserver": [_binary("dagster-webserver"), "-w", str(workspace), "-h", host, "-p", str(port)]}
    if daemon:
        commands["daemon"] = [_binary("dagster-daemon"), "run", "-w", str(workspace)]
    me = os.getpid()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(cmd, env=env, preexec_fn=lambda: die_with_parent(me, signal.SIGTERM))
        print(
            f"marketcov: Dagster UI on http://{host}:{port} ({' and '.join(procs)}), instance {home}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while True:
            for name, p in procs.items():
                code = p.poll()
                if code is not None:
                    print(f"marketcov: {name} exited with code {code}; stopping the rest", file=sys.stderr)
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("marketcov: ui stopped", file=sys.stderr)
        return 0
    finally:
        _stop(list(procs.values()))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
