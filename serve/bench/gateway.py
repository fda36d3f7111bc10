"""`rung bench gateway`: what rung adds to a request through LiteLLM.

Three ways to send the same chat request through one `litellm.Router`, interleaved request by
request so machine noise hits them alike:

- `baseline`: the Router straight to a model group (no rung);
- `constant`: the complexity router with a plugin that returns a fixed tier at once (LiteLLM's
  own routing work, no rung): the fair baseline for `plugin`;
- `plugin`: the complexity router with rung's classifier plugin (`classifier_type: custom`);
- `hook`: rung's pre-call hook rewriting `rung/auto` to the decided group, then the Router.

The LLM behind every group is a constant OpenAI-compatible endpoint on loopback
(`serve.bench.upstream`), and rung is `rung serve` in its own process, so the difference to
the baseline is rung's added latency: the /classify round trip plus the integration's own work.
The clients alone (sync `RungClient`, asyncio `AsyncRungClient`) are timed too, on a loop of
their own.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve.bench.harness import SHORT, UVICORN_FLAGS, machine
from serve.bench.net import free_port, percentiles, server
from serve.model.errors import RungError

VARIANTS = ("baseline", "constant", "plugin", "hook")
GROUPS = {"small": "cheap", "medium": "mid", "large": "big"}


@dataclass
class GatewayBenchConfig:
    model: Path
    requests: int = 300
    warmup: int = 30
    timeout_s: float = 120.0
    log: Callable[[str], None] = field(default=lambda msg: None)


def _deployments(base: str) -> list[dict[str, Any]]:
    return [
        {
            "model_name": group,
            "litellm_params": {"model": f"openai/{group}", "api_base": base, "api_key": "bench"},
        }
        for group in GROUPS.values()
    ]


async def _measure(rung_url: str, llm_url: str, cfg: GatewayBenchConfig) -> dict[str, Any]:
    from litellm import Router

    from serve.gateway.hooks import RungHook
    from serve.gateway.plugin import DecisionMemo, RungClassifier
    from serve.gateway.settings import GatewaySettings

    settings = GatewaySettings(url=rung_url, timeout_ms=1000, cooldown_ms=0, model_groups=GROUPS)
    plugin = RungClassifier(settings, memo=DecisionMemo())
    hook = RungHook(settings, memo=DecisionMemo())
    autos = [_auto("rung-auto", plugin), _auto("constant-auto", _Constant())]
    router = Router(model_list=[*_deployments(llm_url), *autos], num_retries=0)
    chats = [[{"role": "user", "content": text}] for text in SHORT]

    async def baseline(messages: list[dict[str, str]]) -> Any:
        return await router.acompletion(model=GROUPS[spread(messages)], messages=messages)

    async def constant(messages: list[dict[str, str]]) -> Any:
        return await router.acompletion(model="constant-auto", messages=messages)

    async def via_plugin(messages: list[dict[str, str]]) -> Any:
        return await router.acompletion(model="rung-auto", messages=messages)

    async def via_hook(messages: list[dict[str, str]]) -> Any:
        data = {"model": settings.virtual_model, "messages": messages}
        data = await hook.async_pre_call_hook(None, None, data, "completion")
        return await router.acompletion(**data)

    calls = {"baseline": baseline, "constant": constant, "plugin": via_plugin, "hook": via_hook}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for i in range(cfg.warmup + cfg.requests):
        messages = chats[i % len(chats)]
        k = i % len(VARIANTS)
        for name in VARIANTS[k:] + VARIANTS[:k]:  # rotate who goes first
            start = time.perf_counter()
            await calls[name](messages)
            if i >= cfg.warmup:
                times[name].append(time.perf_counter() - start)
        if (i + 1) % 100 == 0:
            cfg.log(f"  {i + 1}/{cfg.warmup + cfg.requests} rounds")
    await plugin.aclose()
    await hook.aclose()
    if plugin.stats["declined"] or hook.stats["fail_open"]:
        raise RungError("rung failed open during the benchmark; the figures would mislead")
    return {name: percentiles(ts) for name, ts in times.items()}


async def _clients(rung_url: str, cfg: GatewayBenchConfig) -> dict[str, Any]:
    """The two clients alone, interleaved, on a loop with nothing else on it."""
    from serve.gateway.aclient import AsyncRungClient
    from serve.gateway.client import RungClient

    times: dict[str, list[float]] = {"sync client": [], "asyncio client": []}
    aclient = AsyncRungClient(rung_url, timeout_ms=1000, cooldown_ms=0)
    sync = RungClient(rung_url, timeout_ms=1000, cooldown_ms=0)
    for i in range(cfg.warmup + cfg.requests * 3):
        text = SHORT[i % len(SHORT)]
        start = time.perf_counter()
        decision = await aclient.classify(text)
        middle = time.perf_counter()
        sync.classify(text)
        end = time.perf_counter()
        if decision.fail_open:
            raise RungError(f"rung did not answer during the benchmark: {decision.error}")
        if i >= cfg.warmup:
            times["asyncio client"].append(middle - start)
            times["sync client"].append(end - middle)
    sync.close()
    await aclient.aclose()
    return {name: percentiles(ts) for name, ts in times.items()}


def spread(messages: list[dict[str, Any]]) -> str:
    """A tier without a model: the baselines use all three groups, as rung does."""
    return list(GROUPS)[len(str(messages[-1].get("content", ""))) % len(GROUPS)]


class _Constant:
    """A classifier plugin with no work in it: what the complexity router costs by itself."""

    async def classify(self, context: Any) -> str:
        return spread(context.structured_messages)


def _auto(name: str, plugin: Any) -> dict[str, Any]:
    return {
        "model_name": name,
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


def run(cfg: GatewayBenchConfig) -> dict[str, Any]:
    if not (cfg.model / "manifest.json").is_file():
        raise RungError(f"no model bundle at {cfg.model}")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env = {**os.environ, "RUNG_MODEL": str(cfg.model.resolve()), "RUNG_LOG_REQUESTS": "false"}
    for key in ("RUNG_MODELS_DIR", "RUNG_API_KEY", "RUNG_EXPLORE_RATE"):
        env.pop(key, None)
    rung_cmd = [sys.executable, "-m", "train.cli", "serve", "--model", str(cfg.model.resolve())]
    llm_cmd = [sys.executable, "-m", "uvicorn", "serve.bench.upstream:app", *UVICORN_FLAGS]
    ports = {"rung": free_port(), "llm": free_port()}
    cfg.log("starting rung serve and the constant LLM endpoint ...")
    result: dict[str, Any] = {"machine": machine(), "model": str(cfg.model.resolve())}
    with (
        server(
            "rung", [*rung_cmd, "--port", str(ports["rung"])], ports["rung"], env, cfg.timeout_s
        ),
        server("llm", [*llm_cmd, "--port", str(ports["llm"])], ports["llm"], env, cfg.timeout_s),
    ):
        cfg.log(f"{cfg.requests} timed rounds (after {cfg.warmup} warm-up) of each variant ...")
        rung_url = f"http://127.0.0.1:{ports['rung']}"
        llm_url = f"http://127.0.0.1:{ports['llm']}/v1"
        result["through_litellm"] = asyncio.run(_measure(rung_url, llm_url, cfg))
        cfg.log("the clients alone ...")
        result["clients"] = asyncio.run(_clients(rung_url, cfg))
    result["requests"] = cfg.requests
    return result


def markdown(res: dict[str, Any]) -> str:
    lit = res["through_litellm"]
    lines = [
        "| path through `litellm.Router` | p50 | p99 | rung adds (p50) | rung adds (p99) |",
        "| --- | --- | --- | --- | --- |",
    ]
    labels = {
        "baseline": "Router straight to a model group (no rung)",
        "constant": "complexity router, constant plugin (no rung)",
        "plugin": "complexity router + rung's classifier plugin",
        "hook": "rung's pre-call hook, then the Router",
    }
    against = {"plugin": "constant", "hook": "baseline"}  # the same Router without rung
    for name in VARIANTS:
        row = lit[name]
        base = lit.get(against.get(name, ""))
        added = (
            ("", "")
            if base is None
            else (
                f"{row['p50_ms'] - base['p50_ms']:+.2f} ms vs {against[name]}",
                f"{row['p99_ms'] - base['p99_ms']:+.2f} ms",
            )
        )
        lines.append(
            f"| {labels[name]} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms "
            f"| {added[0]} | {added[1]} |"
        )
    lines += ["", "| /classify round trip alone | p50 | p99 |", "| --- | --- | --- |"]
    for name, row in res["clients"].items():
        lines.append(f"| {name} | {row['p50_ms']:.3f} ms | {row['p99_ms']:.3f} ms |")
    m = res["machine"]
    lines.append("")
    lines.append(
        f"{res['requests']} timed rounds per path, interleaved; {m.get('cpus', '?')} CPUs, "
        f"1-minute load average {m.get('loadavg_1m', 0):.1f} at start."
    )
    return "\n".join(lines)
