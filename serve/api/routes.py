"""HTTP routes. The classify handlers read the body themselves and validate it with one
pydantic-core call, then return pre-encoded JSON bytes.

Measured on 2 cores (see docs/serving.md): a FastAPI body parameter (~11 us) and
response_model validation (~14 us) each cost half as much as the model itself on a short text
(~25 us), and a threadpool hop (`def` endpoint) ~100 us. The handlers work on raw headers and
a body reader and return a `Reply`, so the same code serves the FastAPI route and the ASGI
fast lane in `serve.api.lane`. The request and response models still describe the API in the
OpenAPI document.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from serve.api.decision import Explorer, InputError, classify_many, classify_one_json, to_query
from serve.api.metrics import CONTENT_TYPE, Metrics
from serve.api.replies import (
    JSON,
    BodyReader,
    Header,
    Reply,
    allowed,
    json_response,
    reply_json,
    request_reader,
    to_response,
    unauthorized,
    validation_error,
)
from serve.api.schemas import (
    BatchRequest,
    BatchResponse,
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    Health,
    ModelSummary,
    Ready,
)
from serve.api.settings import Settings
from serve.api.state import Attempt, ModelHolder

log = logging.getLogger("rung.requests")
INLINE_CHARS = 4096  # longer single texts are classified off the event loop


@dataclass(frozen=True)
class Context:
    """What every route needs, built once per app and kept on `app.state.ctx`."""

    settings: Settings
    holder: ModelHolder
    metrics: Metrics
    explorer: Explorer
    api_key: bytes | None
    admin_token: bytes | None


def _log_request(
    ctx: Context, route: str, text: str, tier: str, explored: bool, start: float
) -> None:
    """One line per decision; the text only as a sha256 prefix unless RUNG_LOG_TEXT."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    extra = f" text={text!r}" if ctx.settings.log_text else ""
    log.info(
        "%s tier=%s explore=%s sha256=%s ms=%.3f%s",
        route,
        tier,
        explored,
        digest,
        (time.perf_counter() - start) * 1e3,
        extra,
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorResponse,
        "description": "API key required (RUNG_API_KEY) and missing or wrong",
    },
    413: {"model": ErrorResponse, "description": "text, batch or body over the limit"},
    422: {"model": ErrorResponse, "description": "invalid JSON or fields; `loc` names them"},
    503: {"model": ErrorResponse, "description": "no model loaded yet"},
}


def body_doc(model: type) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": ref}}}}


router = APIRouter()


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=ERRORS,
    openapi_extra=body_doc(ClassifyRequest),
    summary="Cheapest sufficient tier",
)
async def classify(request: Request) -> Response:
    """Classify one request: `text` or OpenAI `messages`, with optional per-request threshold
    and tier clamps."""
    reply = await classify_reply(
        request.app.state.ctx, request.scope["headers"], request_reader(request)
    )
    return to_response(reply)


async def classify_reply(ctx: Context, headers: Sequence[Header], read: BodyReader) -> Reply:
    """The whole /classify exchange, timed and counted; never raises."""
    start = time.perf_counter()
    try:
        reply = await _classify(ctx, headers, read, start)
    except ClientDisconnect:
        raise
    except Exception:
        log.exception("internal error on /classify")
        reply = INTERNAL_ERROR
    ctx.metrics.observe("/classify", reply.status, time.perf_counter() - start)
    return reply


INTERNAL_ERROR = Reply(500, b'{"detail":"internal error"}')


async def _classify(
    ctx: Context, headers: Sequence[Header], read: BodyReader, start: float
) -> Reply:
    if ctx.api_key is not None and not allowed(headers, ctx.api_key):
        return unauthorized("API key")
    served = ctx.holder.current  # held to the end: a reload mid-request does not affect it
    if served is None:
        return reply_json({"detail": "no model loaded"}, 503)
    s = ctx.settings
    try:
        req = ClassifyRequest.model_validate_json(await read(s.max_body_bytes))
        q = to_query(req, served, s.max_text_chars, s.include_history)
        if len(q.text) > INLINE_CHARS:
            body, tier, explored = await run_in_threadpool(
                classify_one_json, served, q, ctx.explorer
            )
        else:
            body, tier, explored = classify_one_json(served, q, ctx.explorer)
    except ValidationError as exc:
        return validation_error(exc)
    except InputError as exc:
        return reply_json({"detail": exc.detail()}, exc.status)
    ctx.metrics.decided(served.names[tier], explored)
    if s.log_requests:
        _log_request(ctx, "classify", q.text, served.names[tier], explored, start)
    return Reply(200, body)


@router.post(
    "/classify/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    openapi_extra=body_doc(BatchRequest),
    summary="Many requests, one vectorised pass",
)
async def classify_batch(request: Request) -> Response:
    """Classify up to `max_batch` requests at once; results come back in order."""
    ctx: Context = request.app.state.ctx
    start = time.perf_counter()
    try:
        reply = await _classify_batch(ctx, request.scope["headers"], request_reader(request), start)
    except ClientDisconnect:
        raise
    except Exception:
        log.exception("internal error on /classify/batch")
        reply = INTERNAL_ERROR
    ctx.metrics.observe("/classify/batch", reply.status, time.perf_counter() - start)
    return to_response(reply)


async def _classify_batch(
    ctx: Context, headers: Sequence[Header], read: BodyReader, start: float
) -> Reply:
    if ctx.api_key is not None and not allowed(headers, ctx.api_key):
        return unauthorized("API key")
    served = ctx.holder.current
    if served is None:
        return reply_json({"detail": "no model loaded"}, 503)
    s = ctx.settings
    try:
        req = BatchRequest.model_validate_json(await read(s.max_body_bytes))
        if len(req.items) > s.max_batch:
            raise InputError(
                413,
                ("body", "items"),
                f"batch has {len(req.items)} items; the limit is {s.max_batch}",
                "too_large",
            )
        queries = [
            to_query(item, served, s.max_text_chars, s.include_history, ("body", "items", i))
            for i, item in enumerate(req.items)
        ]
        items = await run_in_threadpool(classify_many, served, queries, ctx.explorer)
    except ValidationError as exc:
        return validation_error(exc)
    except InputError as exc:
        return reply_json({"detail": exc.detail()}, exc.status)
    for q, out in zip(queries, items, strict=True):
        ctx.metrics.decided(out["tier"], out["explore"])
        if s.log_requests:
            _log_request(ctx, "batch", q.text, out["tier"], out["explore"], start)
    return reply_json({"items": items})


@router.get("/healthz", response_model=Health, summary="Alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


def _ready(holder: ModelHolder, ok: bool = True) -> Response:
    served = holder.current

    def attempt(a: Attempt | None) -> dict[str, Any] | None:
        return a.to_dict() if a else None

    body: dict[str, Any] = {
        "ready": served is not None,
        "model": served.ref if served else None,
        "path": str(served.path) if served else None,
        "loaded_at": served.loaded_at if served else None,
        "smoke_p_sufficient": served.smoke if served else None,
        "last_reload": attempt(holder.last_attempt),
        "last_refusal": attempt(holder.last_refusal),
        "fallback": holder.fallback.to_dict() if holder.fallback else None,
    }
    return json_response(body, 503 if served is None else 200 if ok else 409)


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Model loaded and smoke-tested",
    responses={503: {"model": Ready, "description": "no model loaded"}},
)
async def readyz(request: Request) -> Response:
    """200 once a model answered its smoke query; says which, and the last reload refusal."""
    return _ready(request.app.state.ctx.holder)


@router.get(
    "/model",
    response_model=ModelSummary,
    summary="The served bundle's manifest",
    responses={503: {"model": ErrorResponse, "description": "no model loaded"}},
)
async def model(request: Request) -> Response:
    """Ladder, threshold (and the target it was calibrated for), metrics and version."""
    served = request.app.state.ctx.holder.current
    if served is None:
        return json_response({"detail": "no model loaded"}, 503)
    m = served.router.manifest
    ladder = m.ladder.to_dict()["tiers"]
    return json_response(
        {
            "name": m.name,
            "version": m.version,
            "created_at": m.created_at,
            "ladder": ladder,
            "threshold": m.threshold,
            "threshold_target": m.threshold_target,
            "embedder": m.embedder.to_dict(),
            "token_cap": served.token_cap,
            "metrics": m.metrics,
            "path": str(served.path),
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.ctx.metrics.render(), media_type=CONTENT_TYPE)


@router.post(
    "/admin/reload",
    response_model=Ready,
    summary="Reload the model now",
    responses={
        401: ERRORS[401],
        403: {"model": ErrorResponse},
        409: {"model": Ready, "description": "bundle refused; old one serves"},
    },
)
async def admin_reload(request: Request) -> Response:
    """Load what the configured path points to now (`Authorization: Bearer RUNG_ADMIN_TOKEN`).

    Refused for everyone while no admin token is configured."""
    ctx: Context = request.app.state.ctx
    if ctx.admin_token is None:
        return json_response({"detail": "reload over HTTP is disabled: set RUNG_ADMIN_TOKEN"}, 403)
    if not allowed(request.scope["headers"], ctx.admin_token):
        return to_response(unauthorized("admin token"))
    attempt = await ctx.holder.reload_async("POST /admin/reload")
    return _ready(ctx.holder, attempt.ok)
