"""Where the Dagster instance (and the default SQLite warehouse) lives.

``DAGSTER_HOME`` when set; otherwise a default home outside the source tree,
``$XDG_DATA_HOME/marketcov`` (``~/.local/share/marketcov``), created on first use with the
embedded default instance config. An empty ``DAGSTER_HOME`` folder gets that config too, so
"another folder" behaves like the default home; a folder that already holds anything is used as
it is (it may be an instance on Dagster's own defaults, whose history another storage would hide).
The CLI and ``marketcov ui`` resolve it the same way, so the UI shows what the CLI wrote.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from marketcov_dagster.lib.universe import ConfigError

HOME_ENV = "DAGSTER_HOME"
_TMP_PREFIX = ".dagster.yaml."


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
        # empty but for another first run's config being written
        created = all(p.name.startswith(_TMP_PREFIX) for p in home.iterdir())
        if created:
            _write_config(home, "check the folder's permissions or set another DAGSTER_HOME")
        return home, created
    home = default_home()
    created = not (home / "dagster.yaml").is_file()
    if created:
        _write_config(home, "set DAGSTER_HOME")
    os.environ[HOME_ENV] = str(home)
    return home, created


def _write_config(home: Path, hint: str) -> None:
    """``home`` (created if missing) with the embedded default config, written atomically: a
    concurrent first run sees all or nothing."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f"{_TMP_PREFIX}{os.getpid()}.tmp"
        tmp.write_text(default_instance_config(), encoding="utf-8")
        tmp.replace(home / "dagster.yaml")
    except OSError as e:
        raise ConfigError(f"cannot create the instance home {home}: {e.strerror}; {hint}") from None
