"""rung as the complexity router's classifier plugin, with the real LiteLLM Router making real
HTTP calls to the fake LLM server and the plugin calling a real rung server."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest
import yaml

from serve.gateway.client import RungClient
from tests.serve.gateway.litellm_setup import GROUPS, answered_by, chat, deployments, router
from tests.support.fake_llm import FakeLLM, fake_llm_server
from tests.support.paths import ROOT
from tests.support.servers import free_port
from tests.support.tiny_data import LARGE, SMALL

pytest.importorskip("litellm")

TIER_MAP = {"small": "SIMPLE", "medium": "MEDIUM", "large": "COMPLEX"}


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with fake_llm_server() as server:
        yield server


def complexity_router(llm: FakeLLM, plugin: object, **config: object) -> object:
    tiers = {TIER_MAP[t]: group for t, group in GROUPS.items()}
    auto = {
        "model_name": "rung-auto",
        "litellm_params": {
            "model": "auto_router/complexity_router",
            "complexity_router_config": {
                "classifier_type": "custom",
                "classifier_plugin": plugin,
                "tiers": tiers,
                **config,
            },
        },
    }
    return router([*deployments(llm.base_url), auto])


async def ask(r: object, text: str, **metadata: object) -> object:
    return await r.acompletion(model="rung-auto", messages=chat(text), metadata=metadata)


def test_rung_decides_the_deployment_that_answers(llm, rung_url):
    from serve.gateway.plugin import make_classifier

    plugin = make_classifier(url=rung_url, timeout_ms=2000, tier_map=TIER_MAP)
    r = complexity_router(llm, plugin)
    easy, hard = SMALL[0], LARGE[2]
    with RungClient(rung_url, timeout_ms=2000) as sync:
        assert sync.classify(hard).tier == "large"
        assert sync.classify(easy, threshold=0.0).tier == "small"

    async def run():
        before = len(llm.calls)
        await ask(r, easy, rung={"threshold": 0.0})  # per-request knob, passed to rung
        await ask(r, hard)
        await ask(r, easy, rung={"min_tier": "medium", "max_tier": "medium"})
        await plugin.aclose()
        return answered_by(llm, before)

    assert asyncio.run(run()) == ["cheap", "big", "mid"]
    assert plugin.stats == {"classified": 3, "declined": 0}


@pytest.mark.parametrize("trouble", ["stopped", "slow"])
def test_without_rung_litellms_fallback_decides_and_nothing_fails(llm, silent_url, trouble):
    from serve.gateway.plugin import make_classifier

    url = f"http://127.0.0.1:{free_port()}" if trouble == "stopped" else silent_url
    plugin = make_classifier(url=url, timeout_ms=50, cooldown_ms=0)
    custom = {t: [g] for t, g in GROUPS.items()}  # rung's own tier names, fallback_tier medium
    auto = {
        "model_name": "rung-auto",
        "litellm_params": {
            "model": "auto_router/complexity_router",
            "complexity_router_config": {
                "classifier_type": "custom",
                "classifier_plugin": plugin,
                "tiers": custom,
                "fallback_tier": "medium",
            },
        },
    }
    r = router([*deployments(llm.base_url), auto])

    async def run():
        before = len(llm.calls)
        start = time.perf_counter()
        replies = [await ask(r, text) for text in (SMALL[0], LARGE[0], SMALL[1])]
        elapsed = time.perf_counter() - start
        await plugin.aclose()
        return replies, answered_by(llm, before), elapsed

    replies, groups, elapsed = asyncio.run(run())
    assert [x.choices[0].message.content for x in replies] == ["answer from medium-llm"] * 3
    assert groups == ["mid"] * 3
    assert plugin.stats == {"classified": 0, "declined": 3}
    assert elapsed < 3.0  # each rung call gave up after 50 ms


def proxy_config_block(doc: str) -> dict:
    """The config.yaml block published in a doc (the test keeps it true)."""
    text = (ROOT / doc).read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    block = next(b for b in blocks if "serve.gateway.plugin.classifier" in b)
    return yaml.safe_load(block)


@pytest.mark.parametrize("doc", ["README.md", "docs/litellm.md"])
def test_the_documented_proxy_config_works_with_litellms_own_resolver(
    llm, rung_url, monkeypatch, doc
):
    """config.yaml names the plugin by dotted path; the proxy resolves it with
    `get_instance_fn` (the function used here) and checks the ClassifierPlugin interface."""
    from litellm.proxy.types_utils.utils import get_instance_fn
    from litellm.types.router import ClassifierPlugin

    from serve.gateway import plugin as plugin_module

    config = proxy_config_block(doc)
    env = config.get("environment_variables") or {}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("RUNG_URL", rung_url)
    monkeypatch.setenv("RUNG_TIMEOUT_MS", "5000")  # the doc's 50 ms is tight on a busy CI box
    monkeypatch.setattr(plugin_module.classifier, "_settings", None)
    monkeypatch.setattr(plugin_module.classifier, "_client", None)
    monkeypatch.setattr(plugin_module.classifier, "stats", {"classified": 0, "declined": 0})
    model_list = config["model_list"]
    for entry in model_list:
        params = entry["litellm_params"]
        crc = params.get("complexity_router_config")
        if crc is not None:
            resolved = get_instance_fn(crc["classifier_plugin"])
            assert isinstance(resolved, ClassifierPlugin) and resolved is plugin_module.classifier
            crc["classifier_plugin"] = resolved
        else:  # point the documented deployments at the fake server
            params.update(api_base=llm.base_url, api_key="x")
    r = router(model_list)
    auto = next(e["model_name"] for e in model_list if "complexity_router_config" in str(e))
    names = {e["model_name"]: e["litellm_params"]["model"] for e in model_list}

    async def run():
        before = len(llm.calls)
        easy = await r.acompletion(
            model=auto, messages=chat(SMALL[0]), metadata={"rung": {"threshold": 0.0}}
        )
        hard = await r.acompletion(model=auto, messages=chat(LARGE[2]))
        await plugin_module.classifier.aclose()
        return easy, hard, [c.model for c in llm.calls[before:]]

    easy, hard, upstream = asyncio.run(run())
    tier_map = dict(pair.split("=") for pair in env["RUNG_TIER_MAP"].split(","))
    tiers = next(e for e in model_list if "complexity_router_config" in str(e))["litellm_params"][
        "complexity_router_config"
    ]["tiers"]
    expect = [names[tiers[tier_map[t]]].partition("/")[2] for t in ("small", "large")]
    assert upstream == expect
    assert plugin_module.classifier.stats["classified"] == 2
