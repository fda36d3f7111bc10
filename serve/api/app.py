"""The FastAPI app: `create_app(settings)` wires settings, model holder, metrics and routes.

The model loads once, in the lifespan (so importing this module or building an app is cheap),
and changes only through `ModelHolder.reload`: on SIGHUP, on POST /admin/reload, and when the
watched path starts to lead to another bundle. For uvicorn workers:
`uvicorn serve.app:create_app --factory` (settings from RUNG_* environment variables).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from serve.api.decision import Explorer
from serve.api.lane import RungApp
from serve.api.metrics import Metrics
from serve.api.openapi import request_schemas
from serve.api.replies import secret
from serve.api.routes import Context, router
from serve.api.settings import Settings, fastapi_options
from serve.api.state import ModelHolder
from serve.model.errors import RungError

log = logging.getLogger("rung.serve")

DESCRIPTION = """Predicts the cheapest sufficient tier of an ordered model ladder for each LLM
request, in well under a millisecond. Unknown request fields are ignored, so a gateway may
forward a whole chat-completions body. Errors: 422 and 413 return `{"detail": [{"loc", "msg",
"type"}]}` naming the field; others `{"detail": "..."}`."""


def configure_logging(level: str) -> None:
    logger = logging.getLogger("rung")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)


def _install_sighup(holder: ModelHolder, tasks: set[asyncio.Task[Any]]) -> bool:
    """Reload on SIGHUP; only possible in the main thread (not under TestClient)."""

    def on_hup() -> None:
        task = asyncio.ensure_future(holder.reload_async("SIGHUP"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx: Context = app.state.ctx
    holder = ctx.holder
    try:
        served = await asyncio.to_thread(holder.load_first)
    except RungError as exc:  # reported as one line (RungApp), not Starlette's traceback
        app.state.startup_error = str(exc)
        raise
    log.info("serving %s (%s)", served.ref["version"], served.path)
    tasks: set[asyncio.Task[Any]] = set()
    if ctx.settings.poll_seconds > 0:
        tasks.add(asyncio.create_task(holder.watch(ctx.settings.poll_seconds)))
    hup = ctx.settings.reload_on_sighup and _install_sighup(holder, tasks)
    try:
        yield
    finally:
        if hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in tasks:
            task.cancel()
        for task in list(tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ctx.metrics.close()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the request schemas the raw-body routes check by hand, with
    the served ladder's tier names (rebuilt if a reload changes them)."""
    ctx: Context = app.state.ctx
    served = ctx.holder.current
    names = served.names if served is not None else None
    # Bundles before schema 2 have no quality table and refuse `quality`: say so.
    knob = served is None or served.router.policy is not None
    if app.openapi_schema and getattr(app.state, "openapi_names", None) == (names, knob):
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    s = ctx.settings
    schemas.update(request_schemas(names, s.max_text_chars, s.max_batch, knob))
    app.openapi_schema = doc
    app.state.openapi_names = (names, knob)
    return doc


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A fresh app; `settings` default to the RUNG_* environment, read now, not at import."""
    settings = settings if settings is not None else Settings()
    configure_logging(settings.log_level)
    metrics = Metrics()
    ctx = Context(
        settings=settings,
        holder=ModelHolder(settings, metrics),
        metrics=metrics,
        explorer=Explorer(settings.explore_rate, settings.explore_seed),
        api_key=secret(settings.api_key),
        admin_token=secret(settings.admin_token),
    )
    from importlib.metadata import version

    app = RungApp(
        title="rung",
        version=version("rung"),
        description=DESCRIPTION,
        lifespan=lifespan,
        **fastapi_options(),
    )
    app.fast_lane = settings.fast_lane
    app.state.ctx = ctx
    app.include_router(router)
    app.add_exception_handler(Exception, _internal_error)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
