"""The pre-call hook on a model-group configuration, the logging callback, report_outcome and
the cascade: real LiteLLM Router, real HTTP to the fake LLM and to a real rung server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.gateway.litellm_setup import (
    GROUPS,
    answered_by,
    chat,
    deployments,
    router,
    wait_for,
)
from tests.support.fake_llm import FakeLLM, Rule, fake_llm_server
from tests.support.servers import free_port
from tests.support.tiny_data import LARGE, SMALL

pytest.importorskip("litellm")


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with fake_llm_server() as server:
        yield server


@pytest.fixture
def callbacks() -> Iterator[list]:
    """litellm.callbacks is global, and LiteLLM copies each callback into its success and
    failure lists on first use: give each test clean lists and restore them."""
    import litellm

    names = ("callbacks", "success_callback", "failure_callback")
    names += ("_async_success_callback", "_async_failure_callback")
    saved = {name: list(getattr(litellm, name)) for name in names}
    for name in names:
        setattr(litellm, name, [])
    yield litellm.callbacks
    for name, value in saved.items():
        setattr(litellm, name, value)


def make_hook(url: str, log_dir: Path | None = None, **extra: object):
    from serve.gateway.hooks import RungHook
    from serve.gateway.plugin import DecisionMemo
    from serve.gateway.settings import GatewaySettings

    settings = GatewaySettings(
        url=url,
        timeout_ms=extra.pop("timeout_ms", 2000),
        cooldown_ms=0,
        model_groups=GROUPS,
        escalation_log_dir=log_dir,
        **extra,
    )
    return RungHook(settings, memo=DecisionMemo())


async def proxy_call(hook, data: dict) -> dict:
    """What the proxy does with a callback that defines async_pre_call_hook."""
    out = await hook.async_pre_call_hook(
        user_api_key_dict=None, cache=None, data=data, call_type="completion"
    )
    return out if out is not None else data


def log_lines(folder: Path) -> list[dict]:
    return [
        json.loads(x)
        for f in sorted(folder.glob("*.jsonl"))
        for x in f.read_text().split("\n")
        if x
    ]


def test_the_proxy_calls_the_hook_because_its_class_defines_it():
    from litellm.integrations.custom_logger import CustomLogger

    from serve.gateway.hooks import RungHook

    assert "async_pre_call_hook" in vars(RungHook)  # the proxy's own test before calling it
    assert RungHook.async_pre_call_hook is not CustomLogger.async_pre_call_hook


def test_the_hook_sends_each_request_to_the_decided_tiers_model_group(llm, rung_url):
    hook = make_hook(rung_url)
    r = router(deployments(llm.base_url))

    async def run():
        before = len(llm.calls)
        bodies = [
            {
                "model": "rung/auto",
                "messages": chat(SMALL[0]),
                "metadata": {"rung": {"threshold": 0}},
            },
            {"model": "rung/auto", "messages": chat(LARGE[2])},
            {
                "model": "rung/auto",
                "messages": chat(LARGE[2]),
                "metadata": {"rung": {"tier": "small"}},
            },
            {
                "model": "rung/auto",
                "messages": chat(LARGE[2]),
                "metadata": {"rung": {"max_tier": "medium"}},
            },
            {"model": "mid", "messages": chat(SMALL[0])},  # not the virtual model: untouched
        ]
        for body in bodies:
            await r.acompletion(**await proxy_call(hook, body))
        await hook.aclose()
        return answered_by(llm, before), bodies

    groups, bodies = asyncio.run(run())
    assert groups == ["cheap", "big", "cheap", "mid", "mid"]
    assert bodies[0]["metadata"]["rung"]["routed_tier"] == "small"
    assert bodies[1]["metadata"]["rung"]["model_version"].startswith("a@")
    assert hook.stats["routed"] == 4 and hook.stats["pinned"] == 1


@pytest.mark.parametrize("trouble", ["stopped", "slow"])
def test_without_rung_the_hook_fails_open_to_the_top_group(llm, silent_url, trouble):
    url = f"http://127.0.0.1:{free_port()}" if trouble == "stopped" else silent_url
    hook = make_hook(url, timeout_ms=50)
    r = router(deployments(llm.base_url))

    async def run():
        before = len(llm.calls)
        for text in (SMALL[0], LARGE[0]):
            reply = await r.acompletion(
                **await proxy_call(hook, {"model": "rung/auto", "messages": chat(text)})
            )
            assert reply.choices[0].message.content == "answer from large-llm"
        await hook.aclose()
        return answered_by(llm, before)

    assert asyncio.run(run()) == ["big", "big"]
    assert hook.stats["fail_open"] == 2


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")  # 4 log rows
def test_the_callback_logs_attempts_that_rung_retrain_reads(
    llm, rung_url, callbacks, tmp_path, tiny_bundles, capsys
):
    from serve.gateway.plugin import make_classifier
    from train.cli import main

    logs = tmp_path / "logs"
    hook = make_hook(rung_url, logs, escalation_log_text=True, tier_map={})
    callbacks.append(hook)
    plugin = make_classifier(url=rung_url, timeout_ms=2000)
    plugin.memo = hook.memo
    auto = {
        "model_name": "rung-auto",
        "litellm_params": {
            "model": "auto_router/complexity_router",
            "complexity_router_config": {
                "classifier_type": "custom",
                "classifier_plugin": plugin,
                "tiers": {t: [g] for t, g in GROUPS.items()},
                "fallback_tier": "large",
            },
        },
    }
    r = router([*deployments(llm.base_url), auto])
    llm.rules.append(Rule(model="small-llm", contains="Translate", status=500, times=1))

    async def run():
        # through the pre-call hook: one success on small, one error on small then a retry up
        ok = await proxy_call(
            hook,
            {
                "model": "rung/auto",
                "messages": chat(SMALL[0]),
                "metadata": {"rung": {"threshold": 0, "request_id": "h1"}},
            },
        )
        await r.acompletion(**ok)
        bad = await proxy_call(
            hook,
            {
                "model": "rung/auto",
                "messages": chat(SMALL[3]),
                "metadata": {"rung": {"threshold": 0, "request_id": "h2"}},
            },
        )
        with pytest.raises(Exception, match="500|fake error"):
            await r.acompletion(**bad)
        await r.acompletion(
            model="mid", messages=chat(SMALL[3]), metadata={"rung": {"request_id": "h2"}}
        )
        # through the complexity-router plugin
        await r.acompletion(
            model="rung-auto", messages=chat(LARGE[1]), metadata={"rung": {"request_id": "p1"}}
        )
        await wait_for(lambda: hook.stats["logged"] >= 4)
        assert hook.report_outcome("h1", "small", "failure")  # the application's validator
        hook.escalation_log.flush()
        await plugin.aclose()
        await hook.aclose()

    asyncio.run(run())
    # LiteLLM's logging worker may replay an earlier test's event onto this loop: keep ours
    lines = [x for x in log_lines(logs) if x["request_id"] in ("h1", "h2", "p1")]
    by = {(x["request_id"], x["tier"], x["source"]): x for x in lines}
    assert len(lines) == 5
    h1 = by["h1", "small", "gateway"]
    assert h1["outcome"] == "success" and h1["routed_tier"] == "small" and h1["text"] == SMALL[0]
    assert h1["cost_usd"] > 0 and h1["latency_ms"] > 0 and h1["model_version"].startswith("a@")
    assert by["h2", "small", "gateway"]["outcome"] == "failure"
    assert "500" in by["h2", "small", "gateway"]["error"]
    assert by["h2", "medium", "gateway"]["outcome"] == "success"
    p1 = by["p1", "large", "gateway"]
    assert p1["routed_tier"] == "large" and p1["model_version"].startswith("a@")
    assert by["h1", "small", "report"]["outcome"] == "failure"

    code = main(
        [
            "retrain",
            "--base",
            str(tiny_bundles["a"]),
            "--logs",
            str(logs),
            "--out",
            str(tmp_path / "cand"),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert "0 malformed lines" in out, out
    assert code in (0, 1)  # 1: the gate kept the base (too few held-out requests), not an error

    from serve.model.ladder import default_ladder
    from train.data.logset import load_logs

    q = dict(
        zip(
            *(lambda d: (d.ids, d.quality.tolist()))(load_logs([logs], default_ladder()).dataset),
            strict=True,
        )
    )
    assert q["h1"][0] == 0.0  # the report overrode the gateway's success on small
    assert q["h2"][:2] == [0.0, 1.0]


def test_no_request_text_in_the_logs_by_default(llm, rung_url, callbacks, tmp_path):
    hook = make_hook(rung_url, tmp_path)
    callbacks.append(hook)
    r = router(deployments(llm.base_url))

    async def run():
        await r.acompletion(
            **await proxy_call(hook, {"model": "rung/auto", "messages": chat(LARGE[5])})
        )
        await wait_for(lambda: hook.stats["logged"] >= 1)
        hook.escalation_log.flush()
        await hook.aclose()

    asyncio.run(run())
    raw = "".join(f.read_text() for f in tmp_path.glob("*.jsonl"))
    assert raw and "text_sha256" in raw
    assert LARGE[5] not in raw and "mortgage" not in raw and '"text"' not in raw


def test_the_cascade_escalates_on_a_rejected_answer_and_logs_both_attempts(llm, rung_url, tmp_path):
    from serve.gateway.cascade import CascadeError, cascade
    from serve.gateway.escalation import EscalationLog
    from serve.gateway.settings import GatewaySettings

    settings = GatewaySettings(url=rung_url, model_groups=GROUPS, timeout_ms=2000)
    log = EscalationLog(tmp_path)
    r = router(deployments(llm.base_url))
    llm.rules.append(Rule(model="medium-llm", contains="Give me a synonym", status=503, times=1))

    async def run():
        by_validator = await cascade(
            chat(SMALL[0]),
            router=r,
            settings=settings,
            escalation_log=log,
            threshold=0.0,
            validator=lambda answer: "small" not in answer,
        )
        by_error = await cascade(
            chat(SMALL[8]),
            router=r,
            settings=settings,
            escalation_log=log,
            min_tier="medium",
            max_tier="medium",
        )
        never = await cascade(
            chat(SMALL[1]),
            router=r,
            settings=settings,
            escalation_log=log,
            threshold=0.0,
            validator=lambda answer: False,
        )
        llm.rules.append(Rule(model="large-llm", contains="office", status=500, times=1))
        with pytest.raises(CascadeError) as failed:
            await cascade(
                chat(SMALL[2]), router=r, settings=settings, escalation_log=log, min_tier="large"
            )
        return by_validator, by_error, never, failed.value

    by_validator, by_error, never, failed = asyncio.run(run())
    assert by_validator.tier == "medium" and by_validator.answer == "answer from medium-llm"
    assert [(a.tier, a.outcome) for a in by_validator.attempts] == [
        ("small", "failure"),
        ("medium", "success"),
    ]
    assert by_validator.attempts[0].error == "rejected by the validator" and by_validator.validated
    assert by_error.tier == "large" and "503" in by_error.attempts[0].error
    assert never.validated is False and never.tier == "large" and len(never.attempts) == 3
    assert [a.tier for a in failed.attempts] == ["large"]
    assert log.flush()
    lines = [x for x in log_lines(tmp_path) if x["request_id"] == by_validator.request_id]
    assert [(x["tier"], x["outcome"], x["attempt"]) for x in lines] == [
        ("small", "failure", 0),
        ("medium", "success", 1),
    ]
    assert all("text" not in x and x["routed_tier"] == "small" for x in lines)
    assert lines[1]["cost_usd"] > 0
    log.close()


def test_ready_made_validators():
    from serve.gateway.cascade import confidence_at_least, parses_as_json

    assert parses_as_json('{"a": 1}') and parses_as_json('```json\n{"a": 1}\n```')
    assert not parses_as_json("sure! {a: 1}")
    at_least = confidence_at_least(0.8)
    assert at_least("The answer is 4.\nConfidence: 0.85")
    assert at_least("answer\nconfidence=90%") and not at_least("answer\nConfidence: 79%")
    assert not at_least("Confidence: 0.9 ... Confidence: 0.2")  # the last report counts
    assert not at_least("no confidence line")
    with pytest.raises(ValueError):
        confidence_at_least(80)


def test_the_cascade_climbs_on_a_low_self_reported_confidence(llm, rung_url, tmp_path):
    from serve.gateway.cascade import cascade, confidence_at_least
    from serve.gateway.escalation import EscalationLog
    from serve.gateway.settings import GatewaySettings

    settings = GatewaySettings(url=rung_url, model_groups=GROUPS, timeout_ms=2000)
    llm.rules.append(Rule(model="small-llm", contains="joke", answer="Meh.\nConfidence: 0.3"))
    llm.rules.append(Rule(model="medium-llm", contains="joke", answer="Ha.\nConfidence: 0.9"))
    log = EscalationLog(tmp_path)
    r = router(deployments(llm.base_url))
    result = asyncio.run(
        cascade(
            chat(SMALL[11]),
            router=r,
            settings=settings,
            escalation_log=log,
            threshold=0.0,
            validator=confidence_at_least(0.8),
        )
    )
    assert result.tier == "medium" and result.answer.startswith("Ha.")
    assert [a.outcome for a in result.attempts] == ["failure", "success"]
    log.close()
