"""Tiers say how to call them (for `rung collect`); keys never live in the file; bundles
written before these fields existed still load."""

from __future__ import annotations

import pytest

from serve.model.ladder import DEFAULT_CONCURRENCY, Ladder, LadderError, Tier, default_ladder

CALLED = """
name = "mine"
pass_mark = 0.75
[[tiers]]
name = "small"
litellm_model = "openai/gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
max_tokens = 256
input_price = 0.15
output_price = 0.6
[[tiers]]
name = "large"
model = "gpt-4o"
litellm_model = "openai/gpt-4o"
api_base = "http://127.0.0.1:4000/v1"
temperature = 0.2
timeout_s = 30
concurrency = 4
[judge]
litellm_model = "anthropic/claude-sonnet"
api_key_env = "ANTHROPIC_API_KEY"
"""


def test_call_fields_parse_and_model_column_defaults_to_litellm_model(tmp_path):
    path = tmp_path / "l.toml"
    path.write_text(CALLED)
    ladder = Ladder.from_toml(path)
    small, large = ladder.tiers
    assert small.model == "openai/gpt-4o-mini" and small.max_tokens == 256
    assert small.temperature == 0.0 and small.concurrency == DEFAULT_CONCURRENCY
    assert large.model == "gpt-4o" and large.api_base.startswith("http://127.0.0.1")
    assert (large.temperature, large.timeout_s, large.concurrency) == (0.2, 30.0, 4)
    assert ladder.judge is not None and ladder.judge.litellm_model == "anthropic/claude-sonnet"
    assert small.token_cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    again = Ladder.from_dict(ladder.to_dict())
    assert again == ladder and again.judge == ladder.judge


def test_manifest_ladders_written_before_call_fields_still_load():
    old = {
        "name": "default",
        "pass_mark": 0.5,
        "unsolved": "top",
        "tiers": [
            {"name": n, "model": m, "input_price": 1.0, "output_price": 2.0, "output_tokens": 300}
            for n, m in (("small", "a"), ("large", "b"))
        ],
    }
    ladder = Ladder.from_dict(old)
    assert ladder.model_columns() == ["a", "b"] and ladder.judge is None
    assert ladder.tiers[0].litellm_model == "" and ladder.tiers[0].max_tokens is None
    assert Ladder.from_dict(default_ladder().to_dict()) == default_ladder()


@pytest.mark.parametrize(
    ("tier", "message"),
    [
        ({"api_key": "sk-123"}, "'api_key' is refused"),
        ({"api_key_env": "sk-live-123"}, "name of an environment variable"),
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"temperature": 3}, r"temperature must lie in \[0, 2\]"),
        ({"temperature": "warm"}, "could not convert"),
    ],
)
def test_bad_call_fields_are_refused_with_the_reason(tier, message):
    raw = {"tiers": [{"name": "a", **tier}, {"name": "b"}]}
    with pytest.raises(LadderError, match=message):
        Ladder.from_dict(raw)


def test_judge_needs_a_model_and_no_key():
    base = {"tiers": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(LadderError, match="judge needs litellm_model"):
        Ladder.from_dict({**base, "judge": {"api_base": "http://127.0.0.1"}})
    with pytest.raises(LadderError, match="refused"):
        Ladder.from_dict({**base, "judge": {"litellm_model": "x/y", "api_key": "k"}})
    with pytest.raises(LadderError, match="judge must be a table"):
        Ladder.from_dict({**base, "judge": "x/y"})


def test_prices_decide_whether_litellm_costs_are_used():
    assert not Tier("a").has_prices and Tier("a", output_price=1.0).has_prices


def test_every_shipped_ladder_parses():
    from tests.support.paths import ROOT

    files = sorted((ROOT / "data" / "ladders").glob("*.toml"))
    ladders = {f.stem: Ladder.from_toml(f) for f in files}
    assert "collect_example" in ladders and ladders["collect_example"].judge is not None
    assert all(t.litellm_model for t in ladders["collect_example"].tiers)
