"""``marketcov serve``: the read-only status API and page (uvicorn), on the instance and
warehouse the CLI uses.

No token is needed on loopback. Binding to any other address requires ``MARKETCOV_API_TOKEN``
(a bearer token, read only from the environment and never logged) and refuses to start without.
"""

from __future__ import annotations

import ipaddress
import os
import sys

from marketcov_dagster.lib.universe import ConfigError, Universe

TOKEN_ENV = "MARKETCOV_API_TOKEN"
UI_URL_ENV = "MARKETCOV_UI_URL"
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_token(host: str) -> str | None:
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and (token != token.strip() or any(c.isspace() for c in token)):
        raise ConfigError(f"{TOKEN_ENV} contains spaces or line breaks; a bearer token is one word (a long random one)")
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{TOKEN_ENV} is shorter than {MIN_TOKEN_LENGTH} characters; use a long random token")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host} is reachable from other machines: set {TOKEN_ENV} (a bearer token) or bind to 127.0.0.1"
        )
    return token


def serve(universe: Universe, host: str, port: int) -> int:
    import dagster as dg
    import uvicorn

    from marketcov_dagster.api.app import create_app
    from marketcov_dagster.api.context import DEFAULT_UI_URL, ApiContext
    from marketcov_dagster.lib.warehouse import Warehouse, default_warehouse_url, sqlite_path
    from marketcov_dagster.lib.warehouse.integrity import file_problem, quick_check

    token = api_token(host)
    path = sqlite_path(default_warehouse_url())
    damage = (file_problem(path) or next(iter(quick_check(path)), None)) if path and path.exists() else None
    if damage:  # listen and say so (503 with the reason), rather than not start or answer wrongly
        print(f"marketcov: warning: warehouse {path} is damaged: {damage}; every endpoint answers 503", file=sys.stderr)
        warehouse = Warehouse("sqlite://")
    else:
        warehouse = Warehouse()
        warehouse.ensure_schema()
    instance = dg.DagsterInstance.get()
    ui_url = os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL
    ctx = ApiContext(universe, warehouse, instance, ui_url=ui_url, token=token, damage=damage)
    auth = "bearer token required" if token else "no token (loopback only)"
    print(f"marketcov: status API on http://{host}:{port} ({auth}); Dagster UI links to {ui_url}", file=sys.stderr)
    uvicorn.run(create_app(ctx), host=host, port=port, log_level="warning", access_log=False)
    return 0
