"""The ASGI app: routes, the status page, ``/metrics``, ``/healthz`` and who gets in.

Read-only. When a token is configured every request but ``/healthz`` must carry it as a bearer
token (compared in constant time); the token is never logged. No CORS headers are sent, so
browsers on other origins cannot read the answers.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from marketcov_dagster.api import models as m
from marketcov_dagster.api.bars import router as bars_router
from marketcov_dagster.api.context import ApiContext
from marketcov_dagster.api.metrics import metrics_text, registry_for
from marketcov_dagster.api.openapi import install as install_openapi
from marketcov_dagster.api.page import render
from marketcov_dagster.api.params import build_filter
from marketcov_dagster.api.routes import State, router, summary

log = logging.getLogger("marketcov.api")
OPEN_PATHS = {"/healthz"}
DOCS_PATHS = {"/openapi.json", "/docs", "/redoc"}


def _authorized(ctx: ApiContext, header: str | None) -> bool:
    if not ctx.token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), ctx.token.encode())


ECHOED_INPUT_CHARS = 100


def _short(error: Any) -> dict[str, Any]:
    out = {k: v for k, v in dict(error).items() if k not in ("ctx", "url")}
    if isinstance(out.get("input"), str) and len(out["input"]) > ECHOED_INPUT_CHARS:
        out["input"] = out["input"][:ECHOED_INPUT_CHARS] + f"... ({len(out['input']):,} characters)"
    if "ctx" in error:  # e.g. {"max_length": 64}: only plain values
        out["ctx"] = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in error["ctx"].items()}
    return out


def create_app(ctx: ApiContext, warm: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if warm and not ctx.health.damage:  # the first request must not pay for reading the whole history
            ctx.snapshots.get()
        ctx.health.start()
        yield
        ctx.health.stop()

    app = FastAPI(
        title="marketcov status API",
        version="1",
        description="Read-only status, coverage, lineage and run health of the marketcov OHLCV assets.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    registry = registry_for(ctx)

    @app.middleware("http")
    async def auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path not in OPEN_PATHS and not _authorized(ctx, request.headers.get("authorization")):
            return JSONResponse(
                {"detail": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if ctx.health.damage and request.url.path not in OPEN_PATHS | DOCS_PATHS:
            # nothing is read from a damaged warehouse: every answer would be wrong
            return JSONResponse({"detail": f"the warehouse is damaged: {ctx.health.damage}"}, status_code=503)
        return await call_next(request)

    app.include_router(router)
    app.include_router(bars_router)
    install_openapi(app, ctx.universe)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422, with each echoed input cut short: an over-long value is not sent back whole
        return JSONResponse({"detail": [_short(e) for e in exc.errors()]}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(
        intervals: str | None = Query(None),
        asset_class: str | None = Query(None),
        state: State | Literal[""] | None = Query(None),
        q: str | None = Query(None, max_length=64),
    ) -> HTMLResponse:
        # the page's form sends every field; an empty one is its "all" choice
        f = build_filter(ctx.universe, None, intervals or None, asset_class or None)
        chosen = {"q": q or "", "intervals": intervals or "", "asset_class": asset_class or "", "state": state or ""}
        return HTMLResponse(render(ctx, summary(ctx, f, state or None, q or None), chosen))

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    def metrics() -> Response:
        body = ctx.body(("metrics",), lambda _snap: metrics_text(registry))  # once per snapshot
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.api_route(
        "/healthz",
        methods=["GET", "HEAD"],
        response_model=m.Health,
        responses={503: {"model": m.Health}},
        summary="Liveness",
    )
    def healthz() -> Any:
        body, status = ctx.health.answer()  # from memory: never behind a query
        return JSONResponse(body, status_code=status)

    return app
