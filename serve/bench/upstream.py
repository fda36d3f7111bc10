"""A constant OpenAI-compatible chat endpoint for `rung bench gateway`: the LLM behind LiteLLM
answers at once, so what the benchmark sees is LiteLLM's and rung's own time."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
).encode()

app = FastAPI(title="rung bench upstream")


@app.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    await request.body()
    return Response(COMPLETION, media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"ready":true}', media_type="application/json")
