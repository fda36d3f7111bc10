"""A small OpenAI-compatible chat server on loopback, so the real LiteLLM client makes real
HTTP calls in tests with no network and no model.

Answers are deterministic: by default `responder(model, text)` (text: the last user message);
`Rule`s, matched in order on the model name and a substring of the prompt, script wrong
answers, HTTP errors (429 with Retry-After, 500, ...), slow replies and malformed bodies, each
for a number of calls or for ever. Token usage is reported (whitespace words of the prompt and
of the answer, so tests can recompute it) and every call is recorded.

    with fake_llm_server() as llm:            # llm.base_url -> "http://127.0.0.1:PORT/v1"
        llm.rules.append(Rule(model="small", status=429, retry_after=0.1, times=2))
        litellm.completion(model="openai/small", api_base=llm.base_url, api_key="x", ...)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.servers import live_server

Responder = Callable[[str, str], str]


def default_responder(model: str, text: str) -> str:
    return f"answer from {model}"


def count_tokens(text: str) -> int:
    """The fake's tokenizer: whitespace words (at least 1 for a non-empty string)."""
    return len(text.split())


@dataclass
class Rule:
    """What to do with matching calls: `times` calls (None: every call), then it is used up."""

    model: str | None = None  # None: any model
    contains: str | None = None  # a substring of the prompt (all messages' text)
    answer: str | None = None  # a scripted answer (status 200)
    status: int = 200
    retry_after: float | None = None  # seconds, sent as the Retry-After header
    delay_s: float = 0.0
    malformed: bool = False  # 200 with a body that is not JSON
    times: int | None = None
    used: int = 0

    def matches(self, model: str, prompt: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.model is not None and self.model != model:
            return False
        return self.contains is None or self.contains in prompt


@dataclass
class Call:
    model: str
    messages: list[dict[str, Any]]
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    answer: str | None
    prompt_tokens: int
    completion_tokens: int
    at: float


@dataclass
class FakeLLM:
    responder: Responder = default_responder
    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def calls_for(self, model: str) -> list[Call]:
        return [c for c in self.calls if c.model == model]

    def _rule(self, model: str, prompt: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(model, prompt):
                    rule.used += 1
                    return rule
        return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _completion(model: str, answer: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def build_app(state: FakeLLM) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        prompt = " ".join(_text(m.get("content")) for m in messages if isinstance(m, dict))
        rule = state._rule(model, prompt)
        if rule is not None and rule.delay_s:
            await asyncio.sleep(rule.delay_s)
        status = rule.status if rule is not None else 200
        answer: str | None = None
        if status == 200:
            scripted = rule.answer if rule is not None else None
            answer = (
                scripted if scripted is not None else state.responder(model, _last_user(messages))
            )
        p_tok = count_tokens(prompt)
        c_tok = count_tokens(answer) if answer is not None else 0
        state.calls.append(
            Call(
                model,
                messages,
                body,
                dict(request.headers),
                status,
                answer,
                p_tok,
                c_tok,
                time.time(),
            )
        )
        if rule is not None and rule.malformed:
            return Response(b'{"choices": [ not json', media_type="application/json")
        if status != 200:
            retry = {} if rule.retry_after is None else {"retry-after": f"{rule.retry_after:g}"}
            error = {"error": {"message": f"fake error {status}", "type": "fake", "code": status}}
            return JSONResponse(error, status_code=status, headers=retry)
        return JSONResponse(_completion(model, answer or "", p_tok, c_tok))

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
    return Starlette(routes=routes)


@contextmanager
def fake_llm_server(responder: Responder = default_responder) -> Iterator[FakeLLM]:
    state = FakeLLM(responder=responder)
    with live_server(build_app(state)) as url:
        state.base_url = f"{url}/v1"
        yield state
