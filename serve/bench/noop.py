"""The floor `rung bench` compares /classify against: FastAPI with no model behind it.

Same framework, same server flags (uvicorn, uvloop, httptools), same request body, and a
response of the same shape and size; the endpoint reads the body, parses its JSON and
returns a constant. What /classify costs above this is rung's own work.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response

from serve.api.settings import fastapi_options

RESPONSE = json.dumps(
    {
        "tier": "small",
        "tier_index": 0,
        "p_sufficient": {"small": 0.9778635501861572, "medium": 0.9989296793937683, "large": 1.0},
        "p_correct": {
            "small": 0.9778635501861572,
            "medium": 0.9989296793937683,
            "large": 0.9992464184761047,
        },
        "cost_usd": 0.0001836,
        "rule": "utility",
        "quality": 0.95,
        "threshold": None,
        "lambda": 25.317252027117004,
        "model": {"name": "default", "version": "default@20260101T000000Z"},
        "explore": False,
    },
    separators=(",", ":"),
).encode()

app = FastAPI(title="rung no-op floor", **fastapi_options())  # configured like the real app


@app.post("/classify")
async def classify(request: Request) -> Response:
    json.loads(await request.body())
    return Response(RESPONSE, media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b'{"ready":true}', media_type="application/json")
