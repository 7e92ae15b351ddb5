"""The instance home: DAGSTER_HOME when set, else a default outside the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketcov_dagster.lib.home import default_instance_config, resolve_home
from marketcov_dagster.lib.universe import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_default_home_is_created_once_under_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    home, created = resolve_home()
    assert home == tmp_path / "data" / "marketcov" and created
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text() == default_instance_config()
    monkeypatch.delenv("DAGSTER_HOME")  # resolve_home set it for Dagster
    assert resolve_home() == (home, False)
    assert [p.name for p in home.iterdir()] == ["dagster.yaml"]


def test_relative_xdg_data_home_is_ignored_as_the_spec_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home()[0] == tmp_path / ".local" / "share" / "marketcov"


def test_an_empty_dagster_home_gets_the_default_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Another folder" behaves like the default home: the same storage and vendor pool limits."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert resolve_home() == (tmp_path, True)
    assert [p.name for p in tmp_path.iterdir()] == ["dagster.yaml"]
    assert (tmp_path / "dagster.yaml").read_text() == default_instance_config()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # the user's own, kept
    assert resolve_home() == (tmp_path, False)
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_a_dagster_home_that_holds_anything_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance on Dagster's own defaults (no dagster.yaml): another storage would hide its history."""
    (tmp_path / "history").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert resolve_home() == (tmp_path, False)
    assert [p.name for p in tmp_path.iterdir()] == ["history"]


def test_dagster_home_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", "rel")
    with pytest.raises(ConfigError, match="relative path"):
        resolve_home()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not an existing folder"):
        resolve_home()


def test_an_unwritable_default_home_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "file"))
    with pytest.raises(ConfigError, match=r"cannot create the instance home .*set DAGSTER_HOME"):
        resolve_home()
