"""The fake LLM server answers through the real LiteLLM client: usage, errors, Retry-After."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

from tests.support.fake_llm import Rule, count_tokens, fake_llm_server  # noqa: E402


def _ask(base_url: str, model: str, text: str, **kw):
    return litellm.completion(
        model=f"openai/{model}",
        api_base=base_url,
        api_key="test-key",
        messages=[{"role": "user", "content": text}],
        num_retries=0,
        **kw,
    )


def test_answers_and_reports_usage_through_litellm():
    with fake_llm_server(lambda model, text: f"{model}: {text.upper()}") as llm:
        reply = _ask(llm.base_url, "small", "what is two plus two")
        assert reply.choices[0].message.content == "small: WHAT IS TWO PLUS TWO"
        assert reply.usage.prompt_tokens == count_tokens("what is two plus two") == 5
        assert reply.usage.completion_tokens == 6
        assert [c.model for c in llm.calls] == ["small"]
        assert llm.calls[0].headers["authorization"] == "Bearer test-key"


def test_rules_script_errors_for_a_number_of_calls():
    with fake_llm_server() as llm:
        llm.rules.append(Rule(model="large", status=429, retry_after=0.5, times=1))
        llm.rules.append(Rule(contains="q7", answer="B"))
        with pytest.raises(litellm.RateLimitError):
            _ask(llm.base_url, "large", "hello")
        assert _ask(llm.base_url, "large", "hello").choices[0].message.content == (
            "answer from large"
        )
        assert _ask(llm.base_url, "small", "id q7: pick one").choices[0].message.content == "B"
        assert [c.status for c in llm.calls] == [429, 200, 200]
