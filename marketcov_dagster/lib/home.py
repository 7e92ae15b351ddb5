"""Where the Dagster instance (and the default SQLite warehouse) lives.

``DAGSTER_HOME`` when set; otherwise a default home outside the source tree,
``$XDG_DATA_HOME/marketcov`` (``~/.local/share/marketcov``), created on first use with the
embedded default instance config. The CLI and ``marketcov ui`` resolve it the same way, so the
UI shows what the CLI wrote.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from marketcov_dagster.lib.universe import ConfigError

HOME_ENV = "DAGSTER_HOME"


def default_home() -> Path:
    """``$XDG_DATA_HOME/marketcov``, or ``~/.local/share/marketcov`` (the XDG default)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "marketcov"


def default_instance_config() -> str:
    """The embedded default instance config (SQLite, run and vendor concurrency)."""
    return resources.files("marketcov_dagster").joinpath("instance/dagster.yaml").read_text(encoding="utf-8")


def resolve_home() -> tuple[Path, bool]:
    """The instance folder and whether it was just created. Sets ``DAGSTER_HOME`` for Dagster.

    A set ``DAGSTER_HOME`` must be an absolute path to an existing folder (Dagster's rule),
    checked here so a user reads one line rather than Dagster's traceback."""
    given = os.environ.get(HOME_ENV)
    if given:
        home = Path(given)
        if not home.is_absolute():
            raise ConfigError(f"DAGSTER_HOME {given!r} is a relative path; give an absolute one, e.g. {home.resolve()}")
        if not home.is_dir():
            raise ConfigError(f"DAGSTER_HOME {given!r} is not an existing folder; create it (mkdir -p {given})")
        return home, False
    home = default_home()
    created = not (home / "dagster.yaml").is_file()
    if created:
        try:
            home.mkdir(parents=True, exist_ok=True)
            tmp = home / f".dagster.yaml.{os.getpid()}.tmp"
            tmp.write_text(default_instance_config(), encoding="utf-8")
            tmp.replace(home / "dagster.yaml")  # atomic: a concurrent first run sees all or nothing
        except OSError as e:
            raise ConfigError(f"cannot create the instance home {home}: {e.strerror}; set DAGSTER_HOME") from None
    os.environ[HOME_ENV] = str(home)
    return home, created
