"""Calling one tier through LiteLLM's async API, with retries, a concurrency cap and cost.

Why our own retry loop: `litellm.acompletion(num_retries=...)` retries 5xx at once with no
wait and backs off 429s exponentially without reading `Retry-After`; its `Router` honours
`Retry-After` but also load-balances and cools deployments down, which would change what is
being measured. The provider SDK's own retries (OpenAI's `max_retries`) exist only for some
providers. So LiteLLM's client retries are switched off (`max_retries=0`, `num_retries=0`) and
this loop retries 408 / 409 / 429 / 5xx, timeouts and dropped connections with exponential
backoff and full jitter, waiting what `Retry-After` asks when the server says.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from serve.model.ladder import Tier
from train.collect.prompts import CollectError

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529}
Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # calls in all, the first included
    base_s: float = 0.5  # first backoff; doubles each retry, full jitter
    max_wait_s: float = 60.0  # no single wait is longer, Retry-After included

    def backoff(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_wait_s)
        return random.uniform(0, min(self.base_s * 2**retry, self.max_wait_s))


@dataclass
class CallResult:
    answer: str | None  # None: the call failed for good (error says why)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = math.nan  # NaN: neither prices nor LiteLLM know it
    latency_ms: float = math.nan  # the successful attempt, request to parsed reply
    attempts: int = 0
    error: str = ""
    fatal: bool = False  # failed with an error no retry can fix (auth, bad request, not found)

    @property
    def ok(self) -> bool:
        return self.answer is not None


def _litellm() -> Any:
    try:
        import litellm
    except ImportError:
        raise CollectError(
            "calling models needs LiteLLM: pip install 'rung[litellm]' (set "
            "LITELLM_LOCAL_MODEL_COST_MAP=True on machines without internet)"
        ) from None
    litellm.suppress_debug_info = True  # no "Give Feedback" banners between progress lines
    return litellm


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (`Retry-After`: seconds or an HTTP date)."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value is None:
        ms = headers.get("retry-after-ms")
        try:
            return float(ms) / 1000 if ms is not None else None
        except ValueError:
            return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return max(email.utils.mktime_tz(parsed) - time.time(), 0.0) if parsed else None


def is_retryable(exc: BaseException) -> bool:
    litellm = _litellm()
    if isinstance(exc, litellm.Timeout | litellm.APIConnectionError | asyncio.TimeoutError):
        return True
    status = _status(exc)
    return status in RETRY_STATUS if status is not None else False


def describe(exc: BaseException) -> str:
    status = _status(exc)
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"


class TierCaller:
    """Calls one tier: at most `tier.concurrency` in flight, retried, costed."""

    def __init__(self, tier: Tier, retry: RetryPolicy | None = None, sleep: Sleep | None = None):
        if not tier.litellm_model:
            raise CollectError(
                f"tier {tier.name!r} has no litellm_model: say how to call it in the ladder, "
                'e.g. litellm_model = "openai/gpt-4o-mini"'
            )
        self.tier = tier
        self._check_provider(tier)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep or asyncio.sleep
        self._cap = asyncio.Semaphore(tier.concurrency)
        self._kwargs = self._call_kwargs(tier)

    @staticmethod
    def _check_provider(tier: Tier) -> None:
        """A model string LiteLLM cannot route is a one-line error before any call."""
        try:
            _litellm().get_llm_provider(model=tier.litellm_model, api_base=tier.api_base or None)
        except Exception:
            raise CollectError(
                f"tier {tier.name!r}: LiteLLM cannot tell the provider of "
                f"{tier.litellm_model!r}; write provider/model, e.g. openai/gpt-4o-mini, "
                "anthropic/claude-..., ollama/llama3:8b (see docs.litellm.ai/docs/providers)"
            ) from None

    @staticmethod
    def _call_kwargs(tier: Tier) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": tier.litellm_model,
            "temperature": tier.temperature,
            "timeout": tier.timeout_s,
            "max_retries": 0,  # provider SDK retries off: this class retries
            "num_retries": 0,  # LiteLLM's own retries off, likewise
        }
        if tier.api_base:
            kw["api_base"] = tier.api_base
        if tier.max_tokens is not None:
            kw["max_tokens"] = tier.max_tokens
        if tier.api_key_env:
            key = os.environ.get(tier.api_key_env)
            if not key:
                raise CollectError(
                    f"tier {tier.name!r}: environment variable {tier.api_key_env} (api_key_env) "
                    "is not set; export it with the key before running"
                )
            kw["api_key"] = key
        return kw

    async def warm_up(self) -> None:
        """Pay LiteLLM's lazy imports and client set-up before timing anything: its
        `mock_response` walks the call path with no request sent and nothing spent."""
        kw = {k: v for k, v in self._kwargs.items() if k != "timeout"}
        with contextlib.suppress(Exception):  # best effort; real calls report real errors
            await _litellm().acompletion(
                messages=[{"role": "user", "content": "warm-up"}], mock_response="ok", **kw
            )

    async def call(self, messages: list[dict[str, Any]]) -> CallResult:
        litellm = _litellm()
        result = CallResult(answer=None)
        for attempt in range(self.retry.attempts):
            result.attempts = attempt + 1
            async with self._cap:
                start = time.perf_counter()
                try:
                    reply = await litellm.acompletion(messages=messages, **self._kwargs)
                except Exception as exc:  # LiteLLM maps every provider's errors to its own
                    result.error = describe(exc)
                    wait = retry_after_s(exc)
                    if not is_retryable(exc):
                        result.fatal = True
                        return result
                    if attempt + 1 == self.retry.attempts:
                        return result
                else:
                    latency = (time.perf_counter() - start) * 1000
                    return self._result(reply, latency, result.attempts)
            await self._sleep(self.retry.backoff(attempt, wait))
        return result

    def _result(self, reply: Any, latency_ms: float, attempts: int) -> CallResult:
        try:
            answer = reply.choices[0].message.content
        except (AttributeError, IndexError):
            return CallResult(None, attempts=attempts, error="reply carries no choices")
        usage = getattr(reply, "usage", None)
        p_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
        c_tok = int(getattr(usage, "completion_tokens", 0) or 0)
        return CallResult(
            answer=answer if isinstance(answer, str) else "",
            input_tokens=p_tok,
            output_tokens=c_tok,
            cost_usd=self._cost(reply, p_tok, c_tok),
            latency_ms=latency_ms,
            attempts=attempts,
        )

    def _cost(self, reply: Any, p_tok: int, c_tok: int) -> float:
        """The tier's prices x reported usage; LiteLLM's own price map when it has none."""
        if self.tier.has_prices:
            return self.tier.token_cost(p_tok, c_tok)
        hidden = getattr(reply, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        if cost is None:
            try:
                cost = _litellm().completion_cost(completion_response=reply)
            except Exception:  # model absent from LiteLLM's price map
                return math.nan
        return float(cost) if cost is not None else math.nan

    def estimate_cost(self, messages: list[dict[str, Any]], observed: float | None) -> float:
        """An upper-ish guess of one call's USD, for the budget: the largest cost seen so
        far for this tier, else ~3 characters per input token and max_tokens (or the tier's
        output_tokens) out."""
        if observed is not None:
            return observed
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        out = self.tier.max_tokens or self.tier.output_tokens
        return self.tier.token_cost(chars / 3 + 8, out)
