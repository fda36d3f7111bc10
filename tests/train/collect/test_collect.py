"""`rung collect` end to end through the real LiteLLM client against the loopback fake."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import pytest

from serve.model.ladder import Ladder
from tests.support.fake_llm import Rule
from tests.train.collect.helpers import PRICES, write_ladder, write_prompts
from train.collect.api import collect
from train.collect.caller import RetryPolicy
from train.collect.journal import Journal
from train.collect.prompts import read_prompts
from train.collect.runner import CollectConfig, Mode, journal_path
from train.collect.scorers import build_scorer
from train.data.load import load_dataset
from train.data.types import SourceFormat

# prompt q<i> is answered right ("yes") from tier HARD[i] upward
HARD = [0, 0, 1, 2, 1, 0]
TIERS = ["small", "medium", "large"]


def responder(model: str, text: str) -> str:
    i = int(text.split()[0][1:])
    return "yes" if TIERS.index(model) >= HARD[i] else "no, sorry"


def prompts(tmp_path: Path) -> Path:
    rows = [
        {"id": f"q{i}", "text": f"q{i} is this fine", "expected": "yes", "family": "fam"}
        for i in range(len(HARD))
    ]
    return write_prompts(tmp_path / "prompts.jsonl", rows)


def config(tmp_path: Path, base: str, mode: Mode = Mode.ALL, **kw) -> CollectConfig:
    ladder = Ladder.from_toml(write_ladder(tmp_path / "ladder.toml", base, **kw.pop("lad", {})))
    return CollectConfig(
        read_prompts([prompts(tmp_path)]),
        ladder,
        build_scorer("exact"),
        tmp_path / "out.csv",
        mode,
        retry=kw.pop("retry", RetryPolicy(attempts=3, base_s=0.01)),
        **kw,
    )


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_all_mode_measures_every_tier_and_accounts_tokens_and_cost(tmp_path, llm):
    llm.responder = responder
    out = collect(config(tmp_path, llm.base_url))
    rows = {r["sample_id"]: r for r in table(out.table)}
    assert len(rows) == len(HARD) and len(llm.calls) == len(HARD) * 3
    for i, hard in enumerate(HARD):
        row = rows[f"q{i}"]
        assert row["eval_name"] == "fam" and row["prompt"] == f"['q{i} is this fine']"
        for t, name in enumerate(TIERS):
            col = f"{name}-model"
            assert float(row[col]) == float(t >= hard)
            call = next(c for c in llm.calls_for(name) if f"q{i} " in c.messages[0]["content"])
            assert int(row[f"{col}|input_tokens"]) == call.prompt_tokens == 4
            assert int(row[f"{col}|output_tokens"]) == call.completion_tokens
            pin, pout = PRICES[name]
            expect = (call.prompt_tokens * pin + call.completion_tokens * pout) / 1e6
            assert float(row[f"{col}|total_cost"]) == pytest.approx(expect, rel=1e-12)
            assert float(row[f"{col}|latency_ms"]) > 0
    doc = out.summary
    small = doc["tiers"][0]
    assert small["pass_rate"] == pytest.approx(3 / 6)
    lo, hi = small["pass_rate_95ci"]
    assert lo < 0.5 < hi
    spend = sum(
        (c.prompt_tokens * PRICES[c.model][0] + c.completion_tokens * PRICES[c.model][1]) / 1e6
        for c in llm.calls
    )
    assert doc["run"]["spend_usd"] == pytest.approx(spend)
    grad = doc["graduation"]
    assert grad[0]["pass_rate_difference"] == pytest.approx(2 / 6)  # q2 and q4 gain
    assert grad[1]["pass_rate_difference"] == pytest.approx(1 / 6)  # q3 gains
    assert grad[1]["cost_multiple"] > 1
    month = doc["monthly"][2]
    assert month["usd_per_month"] == pytest.approx(month["cost_per_request_usd"] * 10_000 * 30)
    assert json.loads(out.summary_path.read_text())["tiers"][2]["pass_rate"] == 1.0


def test_table_is_read_by_training_data_layer(tmp_path, llm):
    llm.responder = responder
    cfg = config(tmp_path, llm.base_url)
    collect(cfg)
    ds = load_dataset([cfg.out], cfg.ladder)
    assert ds.inputs[0].format == SourceFormat.ROUTERBENCH.value
    assert ds.ids == [f"q{i}" for i in range(len(HARD))]
    assert list(ds.labels) == HARD
    assert ds.groups == ["fam"] * len(HARD)
    assert (ds.cost > 0).all()


def test_cascade_stops_at_the_first_pass_and_leaves_the_rest_unknown(tmp_path, llm):
    llm.responder = responder
    cfg = config(tmp_path, llm.base_url, Mode.CASCADE)
    out = collect(cfg)
    assert len(llm.calls) == sum(h + 1 for h in HARD)
    rows = {r["sample_id"]: r for r in table(out.table)}
    for i, hard in enumerate(HARD):
        cells = [rows[f"q{i}"][f"{n}-model"] for n in TIERS]
        assert cells[: hard + 1] == ["0"] * hard + ["1"]
        assert cells[hard + 1 :] == [""] * (2 - hard)
    ds = load_dataset([cfg.out], cfg.ladder)
    assert list(ds.labels) == HARD
    assert int(ds.sufficient.shape[0]) == len(HARD)
    assert math.isnan(ds.quality[0, 1])  # masked, not a failure
    assert "cascade" in out.summary["note"]


def test_rerun_skips_done_pairs_and_a_new_mode_fills_the_gaps(tmp_path, llm):
    llm.responder = responder
    collect(config(tmp_path, llm.base_url, Mode.CASCADE))
    first = len(llm.calls)
    again = collect(config(tmp_path, llm.base_url, Mode.CASCADE))
    assert len(llm.calls) == first and again.stats.reused == first and again.stats.calls == 0
    full = collect(config(tmp_path, llm.base_url, Mode.ALL))
    assert len(llm.calls) == len(HARD) * 3 and full.stats.calls == len(HARD) * 3 - first
    assert all(r["large-model"] != "" for r in table(full.table))


def test_retries_honour_retry_after_and_back_off(tmp_path, llm):
    llm.responder = responder
    llm.rules += [
        Rule(model="small", contains="q0 ", status=429, retry_after=0.25, times=2),
        Rule(model="medium", contains="q1 ", status=503, times=1),
    ]
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    out = collect(config(tmp_path, llm.base_url), sleep=sleep)
    assert out.stats.errors == 0
    assert sorted(waits)[-2:] == [0.25, 0.25]  # what Retry-After asked, twice
    assert len(waits) == 3 and 0 <= min(waits) <= 0.01  # 503: jittered backoff from base_s
    jr = Journal(journal_path(out.table), "exact").records
    assert jr[("q0", "small")].attempts == 3 and jr[("q1", "medium")].attempts == 2
    assert [c.status for c in llm.calls if c.model == "small" and "q0 " in str(c.messages)] == [
        429,
        429,
        200,
    ]


def test_real_sleeps_wait_for_retry_after(tmp_path, llm):
    llm.rules.append(Rule(model="small", contains="q0 ", status=429, retry_after=0.3, times=1))
    cfg = config(tmp_path, llm.base_url, max_cost=None)
    cfg.prompts = cfg.prompts[:1]
    collect(cfg)
    small = [c for c in llm.calls if c.model == "small"]
    assert [c.status for c in small] == [429, 200]
    assert small[1].at - small[0].at >= 0.3


def test_calls_that_keep_failing_are_recorded_unknown_then_retried_on_rerun(tmp_path, llm):
    llm.responder = responder
    llm.rules += [
        Rule(model="large", contains="q3 ", status=500),  # for ever, until removed
        Rule(model="medium", contains="q2 ", malformed=True),
    ]
    out = collect(config(tmp_path, llm.base_url, retry=RetryPolicy(attempts=2, base_s=0.001)))
    assert out.stats.errors == 2
    rows = {r["sample_id"]: r for r in table(out.table)}
    assert rows["q3"]["large-model"] == "" and rows["q2"]["medium-model"] == ""
    jr = Journal(journal_path(out.table), "exact").records
    assert "500" in jr[("q3", "large")].error and jr[("q3", "large")].attempts == 2
    assert jr[("q2", "medium")].error and jr[("q2", "medium")].score is None
    assert out.summary["tiers"][2]["unknown"] == 1
    llm.rules.clear()
    before = len(llm.calls)
    again = collect(config(tmp_path, llm.base_url))
    assert len(llm.calls) - before == 2 and again.stats.errors == 0
    rows = {r["sample_id"]: r for r in table(again.table)}
    assert rows["q3"]["large-model"] == "1" and rows["q2"]["medium-model"] == "1"


def test_timeouts_are_retried_then_unknown(tmp_path, llm):
    llm.rules.append(Rule(model="small", contains="q0 ", delay_s=1.5))
    cfg = config(
        tmp_path, llm.base_url, retry=RetryPolicy(attempts=2, base_s=0.001), lad={"timeout_s": 0.3}
    )
    cfg.prompts = cfg.prompts[:2]
    out = collect(cfg)
    jr = Journal(journal_path(out.table), "exact").records
    assert jr[("q0", "small")].score is None and jr[("q0", "small")].attempts == 2
    assert "Timeout" in jr[("q0", "small")].error
    assert jr[("q1", "small")].score is not None


def test_budget_stops_before_the_cap_and_a_higher_cap_goes_on(tmp_path, llm):
    llm.responder = responder
    # each small call costs (4 x 1 + 1 x 2) / 1e6 = 6e-6; medium 1.8e-5; large 7e-5 .. 1e-4
    lad = {"extra": "max_tokens = 3"}
    cap = 2.0e-4
    out = collect(config(tmp_path, llm.base_url, max_cost=cap, lad=lad))
    assert out.stats.stopped_for_budget and out.stats.pending > 0
    assert 0 < out.summary["run"]["spend_total_usd"] <= cap
    done = len(llm.calls)
    assert 0 < done < len(HARD) * 3
    more = collect(config(tmp_path, llm.base_url, max_cost=1.0, lad=lad))
    assert not more.stats.stopped_for_budget
    assert len(llm.calls) == len(HARD) * 3 and more.stats.reused == done


def test_concurrency_cap_per_tier(tmp_path, llm):
    llm.rules.append(Rule(model="small", delay_s=0.2))
    cfg = config(tmp_path, llm.base_url, lad={"concurrency": 2})
    cfg.ladder = Ladder.from_dict(
        {**cfg.ladder.to_dict(), "tiers": cfg.ladder.to_dict()["tiers"][:2]}
    )
    start = time.perf_counter()
    collect(cfg)
    elapsed = time.perf_counter() - start
    arrivals = sorted(c.at for c in llm.calls_for("small"))
    assert len(arrivals) == 6
    # 6 calls of 0.2 s, two at a time: three waves
    assert arrivals[-1] - arrivals[0] >= 0.35 and elapsed >= 0.6


def test_tiers_without_prices_take_litellm_costs_or_stay_blank(tmp_path, llm):
    """No prices in the ladder: LiteLLM's own price for a model it knows (its bundled map,
    LITELLM_LOCAL_MODEL_COST_MAP=True), blank for one it does not; never a made-up 0."""
    import litellm

    (tmp_path / "l.toml").write_text(
        f"""
[[tiers]]
name = "small"
litellm_model = "openai/gpt-4o-mini"
api_base = "{llm.base_url}"
api_key_env = "RUNG_TEST_FAKE_KEY"
[[tiers]]
name = "large"
litellm_model = "openai/house-model-unpriced"
api_base = "{llm.base_url}"
api_key_env = "RUNG_TEST_FAKE_KEY"
"""
    )
    cfg = CollectConfig(
        read_prompts([prompts(tmp_path)])[:2],
        Ladder.from_toml(tmp_path / "l.toml"),
        build_scorer("contains"),
        tmp_path / "out.csv",
    )
    out = collect(cfg)
    rows = table(out.table)
    info = litellm.model_cost["gpt-4o-mini"]
    for row in rows:
        call = next(
            c for c in llm.calls_for("gpt-4o-mini") if row["sample_id"] + " " in str(c.messages)
        )
        want = (
            call.prompt_tokens * info["input_cost_per_token"]
            + call.completion_tokens * info["output_cost_per_token"]
        )
        assert float(row["openai/gpt-4o-mini|total_cost"]) == pytest.approx(want)
        assert row["openai/house-model-unpriced|total_cost"] == ""
        assert row["openai/house-model-unpriced"] != ""  # scored all the same
    assert math.isnan(out.summary["monthly"][1]["usd_per_month"])


def test_cascade_goes_past_a_tier_whose_call_failed(tmp_path, llm):
    llm.responder = responder
    llm.rules.append(Rule(model="small", contains="q0 ", status=500))
    cfg = config(tmp_path, llm.base_url, Mode.CASCADE, retry=RetryPolicy(attempts=1))
    out = collect(cfg)
    row = {r["sample_id"]: r for r in table(out.table)}["q0"]
    # small is unknown (its call failed), medium passed, large never asked
    assert [row[f"{n}-model"] for n in TIERS] == ["", "1", ""]
    assert out.stats.errors == 1 and out.summary["tiers"][0]["unknown"] == 1
