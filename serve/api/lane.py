"""The fast lane: POST /classify answered straight from the ASGI callable.

Measured on 2 cores (docs/serving.md): routing a request through FastAPI (router, dependency
solving, middleware, Request and Response objects) costs about as much as the whole decision,
and most of that cost comes back after the model has pushed the framework out of the CPU
caches. The lane skips that layer for one route only. Validation, error bodies, auth, metrics
and logging are the same code the FastAPI route runs (`serve.api.routes.classify_reply`), and
FastAPI keeps every other route, the OpenAPI document and lifespan. `RUNG_FAST_LANE=false`
turns it off; `rung bench` measures both.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from serve.api.replies import BodyReader, Reply, declared_length, too_large
from serve.api.routes import classify_reply

CLASSIFY = "/classify"


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _reader(scope: Scope, receive: Receive) -> BodyReader:
    async def read(limit: int) -> bytes:
        declared_length(scope["headers"], limit)
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            body += message.get("body", b"")
            if len(body) > limit:
                raise too_large(limit)
            if not message.get("more_body", False):
                return body

    return read


async def _send(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-length", str(len(reply.body)).encode()),
        (b"content-type", b"application/json"),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class RungApp(FastAPI):
    """FastAPI, with POST /classify taken before routing when `fast_lane` is on."""

    fast_lane = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fast_lane
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and _route_path(scope) == CLASSIFY
        ):
            try:
                reply = await classify_reply(
                    self.state.ctx, scope["headers"], _reader(scope, receive)
                )
            except ClientDisconnect:  # gone before sending its whole body
                return
            await _send(send, reply)
            return
        if scope["type"] == "lifespan":
            send = self._one_line_startup_failure(send)
        await super().__call__(scope, receive, send)

    def _one_line_startup_failure(self, send: Send) -> Send:
        """A model that cannot be served fails start-up with its one-line reason; Starlette
        would hand the server a traceback to print (under plain `uvicorn`; `rung serve`
        checks before it starts uvicorn)."""

        async def wrapped(message: Message) -> None:
            error = getattr(self.state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and error:
                message = {**message, "message": f"rung: {error}"}
            await send(message)

        return wrapped
