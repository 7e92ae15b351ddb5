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

import sqlalchemy as sa
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from marketcov_dagster.api import models as m
from marketcov_dagster.api.bars import router as bars_router
from marketcov_dagster.api.context import ApiContext
from marketcov_dagster.api.metrics import metrics_text, registry_for
from marketcov_dagster.api.page import render
from marketcov_dagster.api.params import build_filter
from marketcov_dagster.api.routes import State, router, summary

log = logging.getLogger("marketcov.api")
OPEN_PATHS = {"/healthz"}


def _authorized(ctx: ApiContext, header: str | None) -> bool:
    if not ctx.token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), ctx.token.encode())


def create_app(ctx: ApiContext, warm: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if warm:  # the first request must not pay for reading the whole history
            ctx.snapshots.get()
        yield

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
        return await call_next(request)

    app.include_router(router)
    app.include_router(bars_router)

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

    @app.get("/healthz", response_model=m.Health, responses={503: {"model": m.Health}}, summary="Liveness")
    def healthz() -> Any:
        out = {"warehouse": "ok", "instance": "ok"}
        try:
            with ctx.warehouse.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as e:  # any failure means unhealthy; the message names no secret
            out["warehouse"] = f"unreachable: {type(e).__name__}"
        try:
            with ctx.instance_lock:
                ctx.instance.get_runs_count()
        except Exception as e:
            out["instance"] = f"unreachable: {type(e).__name__}"
        ok = out["warehouse"] == "ok" and out["instance"] == "ok"
        return JSONResponse({"ok": ok, **out}, status_code=200 if ok else 503)

    return app
