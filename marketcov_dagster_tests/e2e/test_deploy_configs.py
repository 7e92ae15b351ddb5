"""Every Dagster instance file under deploy/ passes Dagster's own config validation: the instance
schema, and the storage, run coordinator and run launcher classes' config schemas (the Docker and
Kubernetes launchers from dagster-docker and dagster-k8s)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ["production", "docker", "kubernetes"]
LAUNCHERS = {"production": None, "docker": "DockerRunLauncher", "kubernetes": "K8sRunLauncher"}


def _validate_class(section: dict[str, Any]) -> dict[str, Any]:
    """The section's config processed by its class's schema (environment variables resolved)."""
    klass = getattr(importlib.import_module(str(section["module"])), str(section["class"]))
    result = process_config(resolve_to_config_type(klass.config_type()), section.get("config") or {})
    assert result.success, [e.message for e in result.errors or []]
    return dict(result.value or {})


@pytest.mark.parametrize("profile", PROFILES)
def test_instance_config_is_valid(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql+psycopg2://dagster:secret@db:5432/dagster")
    config, custom_class = dagster_instance_config(str(ROOT / "deploy" / profile))
    assert custom_class is None
    storage = {"module": "dagster_postgres", "class": "DagsterPostgresStorage", "config": config["storage"]["postgres"]}
    resolved = _validate_class(storage)
    assert str(resolved["postgres_url"]).startswith("postgresql+psycopg2://")  # the driver SQLAlchemy 2.1 needs
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    _validate_class(config["run_coordinator"])
    assert config["concurrency"]["pools"]["default_limit"] >= 1 and config["run_retries"]["enabled"]
    launcher = LAUNCHERS[profile]
    if launcher:
        assert config["run_launcher"]["class"] == launcher
        _validate_class(config["run_launcher"])
    else:
        assert "run_launcher" not in config  # the default: a subprocess per run on the daemon's machine


def test_a_broken_launcher_config_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a misspelt launcher field is refused by Dagster's schema."""
    section = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "dagster.yaml").read_text())["run_launcher"]
    section["config"]["job_namespaces"] = "typo"
    with pytest.raises(AssertionError):
        _validate_class(section)


def test_compose_and_helm_values_point_at_this_code_location() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker" / "docker-compose.yaml").read_text())
    code = compose["services"]["marketcov_code"]
    assert "marketcov_dagster.definitions" in code["command"]
    assert code["environment"]["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    docker_instance = yaml.safe_load((ROOT / "deploy" / "docker" / "dagster.yaml").read_text())
    # every variable a run needs is handed from the daemon to the run containers
    assert set(docker_instance["run_launcher"]["config"]["env_vars"]) <= set(code["environment"]) | {"MARKETCOV_CONFIG"}
    workspace = yaml.safe_load((ROOT / "deploy" / "docker" / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "marketcov_code"

    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "marketcov_dagster.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"


def test_no_recipe_exposes_the_ui_beyond_loopback() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker" / "docker-compose.yaml").read_text())
    published = [p for svc in compose["services"].values() for p in svc.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published), published
    texts = {p: p.read_text() for p in [ROOT / "README.md", ROOT / "Procfile", ROOT / "scripts" / "services"]}
    for path, text in texts.items():
        for line in text.splitlines():
            if "services start" in line or "dagster-webserver" in line or "dagster dev" in line:
                assert "0.0.0.0" not in line, (path.name, line)


def test_every_recipe_runs_the_status_api_beside_the_ui() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker" / "docker-compose.yaml").read_text())
    api = compose["services"]["api"]
    assert api["command"][:2] == ["marketcov", "serve"] and "0.0.0.0" in api["command"]
    # a container must bind beyond its loopback, so the token is required and the port stays local
    assert api["environment"]["MARKETCOV_API_TOKEN"].startswith("${MARKETCOV_API_TOKEN:?")
    assert api["environment"]["DAGSTER_PG_URL"] == compose["services"]["webserver"]["environment"]["DAGSTER_PG_URL"]
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    assert "marketcov serve" in procfile["api"] and "0.0.0.0" not in procfile["api"]
    services = (ROOT / "scripts" / "services").read_text()
    assert 'start_one api "$BIN/marketcov" serve --host "$HOST"' in services and "stop_one api" in services
    deployment, service = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "marketcov-api.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["marketcov", "serve"]
    assert {"secretRef": {"name": "marketcov-secrets"}} in container["envFrom"]  # MARKETCOV_API_TOKEN
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert (
        service["spec"]["type"] == "ClusterIP"
        and service["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    )
    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "values.yaml").read_text())
    assert {"name": "marketcov-secrets"} in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
