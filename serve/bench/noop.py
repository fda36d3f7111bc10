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
        "p_sufficient": {"small": 0.912345, "medium": 0.973456, "large": 1.0},
        "threshold": 0.6789,
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
