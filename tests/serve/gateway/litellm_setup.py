"""Shared set-up for the LiteLLM tests: deployments on the fake LLM server, and helpers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

GROUPS = {"small": "cheap", "medium": "mid", "large": "big"}  # rung tier -> model group
UPSTREAM = {"cheap": "small-llm", "mid": "medium-llm", "big": "large-llm"}  # group -> fake model
PRICE = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}


def deployments(base_url: str) -> list[dict[str, Any]]:
    return [
        {
            "model_name": group,
            "litellm_params": {"model": f"openai/{model}", "api_base": base_url, "api_key": "x"},
            "model_info": dict(PRICE),
        }
        for group, model in UPSTREAM.items()
    ]


def router(model_list: list[dict[str, Any]]) -> Any:
    from litellm import Router

    return Router(model_list=model_list, num_retries=0)


def answered_by(llm: Any, since: int) -> list[str]:
    """Model groups whose upstream answered calls made after `since` (count of earlier calls)."""
    back = {model: group for group, model in UPSTREAM.items()}
    return [back[c.model] for c in llm.calls[since:]]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


async def wait_for(predicate: Any, seconds: float = 10.0) -> None:
    """LiteLLM runs success/failure callbacks in background tasks: wait for them."""
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    deadline = time.monotonic() + seconds
    await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), seconds)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("callback did not run in time")
        await asyncio.sleep(0.01)
