"""The OpenAPI document says what the server requires: dates are ``format: date``, and the
comma-separated names (intervals, asset classes, remediation kinds) are patterns over the names
the universe knows, so a client generated from it sends only what is accepted."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from marketcov_dagster.lib.kinds import REMEDIATION_KINDS
from marketcov_dagster.lib.universe import Universe

DATE_PARAMS = frozenset({"start", "end", "since", "session"})


def _names_pattern(names: Iterable[str]) -> str:
    one = "|".join(re.escape(n) for n in sorted(set(names)))
    return f"^({one})(,({one}))*$"


def refined_schema(app: FastAPI, universe: Universe) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    names: dict[str, list[str]] = {
        "intervals": [s.interval for s in universe.all_specs],
        "interval": [s.interval for s in universe.all_specs],
        "asset_class": [s.asset_class for s in universe.all_specs],
        "kind": list(REMEDIATION_KINDS),
    }
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                target = _string_schema(param.get("schema", {}))
                if target is None:
                    continue
                name = param.get("name")
                if name in DATE_PARAMS:
                    target["format"] = "date"
                elif name in names and param.get("in") == "query":
                    target["pattern"] = _names_pattern(names[name])
    return schema


def _string_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The string branch of a parameter's schema (``anyOf: [string, null]`` for optional ones)."""
    if schema.get("type") == "string":
        return schema
    for option in schema.get("anyOf", []):
        if option.get("type") == "string":
            return option  # type: ignore[no-any-return]
    return None


def install(app: FastAPI, universe: Universe) -> None:
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(refined_schema(app, universe))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
