"""`rung bench collect`: collection throughput against an OpenAI-compatible stub on loopback,
and rung's own overhead per call over bare `litellm.acompletion` at the same concurrency.

The stub runs in a child process (so its CPU is not billed to the client) and answers at once
with reported usage, so what is measured is the client side: LiteLLM plus, for `collect`,
rung's scheduling, scoring, journal append and table writing. Both sides make the same calls
(a two-tier ladder, half the concurrency per tier, as many calls in flight in all), after a
warm-up that pays LiteLLM's lazy imports; (collect - bare) / calls, in wall time and in this
process's CPU time, best of `rounds` for each. rung's own overhead per call is also measured
directly: the whole collection with model calls that return at once (no LiteLLM, no network),
which is what rung adds to every call whatever the provider.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serve.model.ladder import Ladder, Tier

STUB_MODEL = "stub"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_stub(port: int) -> None:  # the child process
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "the answer is 42"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": words,
                    "completion_tokens": 4,
                    "total_tokens": words + 4,
                },
            }
        )

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": []})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _wait_ready(url: str, proc: Any, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError("the stub server exited")
        try:
            httpx.get(f"{url}/models", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the stub server did not start")


def _ladder(base_url: str, concurrency: int) -> Ladder:
    per_tier = max(concurrency // 2, 1)
    tiers = tuple(
        Tier(
            name=name,
            model=f"stub-{name}",
            litellm_model=f"openai/{STUB_MODEL}-{name}",
            api_base=base_url,
            api_key_env="OPENAI_API_KEY",  # as the bare side passes api_key: same client path
            input_price=price,
            output_price=price,
            concurrency=per_tier,
        )
        for name, price in (("small", 0.2), ("large", 10.0))
    )
    return Ladder(tiers=tiers, name="bench")


async def _bare(ladder: Ladder, texts: list[str], concurrency: int) -> list[float]:
    """The floor: the same calls straight through litellm.acompletion, no rung code."""
    import litellm

    from train.collect.caller import TierCaller

    cap = asyncio.Semaphore(concurrency)
    kwargs = [TierCaller._call_kwargs(t) for t in ladder.tiers]
    latencies: list[float] = []

    async def one(kw: dict[str, Any], text: str) -> None:
        async with cap:
            start = time.perf_counter()
            reply = await litellm.acompletion(messages=[{"role": "user", "content": text}], **kw)
            assert reply.choices[0].message.content
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(one(kw, t) for t in texts for kw in kwargs))
    return latencies


def _own_overhead(cfg: Any, per_day: int = 10_000) -> tuple[float, float]:
    """Seconds of wall and CPU for a whole collection whose model calls return at once with no
    LiteLLM and no network: everything left is rung's (scheduling, scoring, journal, table,
    summary). Far less noisy than the difference of two live runs."""
    from train.collect.api import write_outputs
    from train.collect.caller import CallResult, TierCaller
    from train.collect.runner import Collector

    class Instant(TierCaller):
        async def warm_up(self) -> None:
            pass

        async def call(self, messages: list[dict[str, Any]]) -> CallResult:
            await asyncio.sleep(0)  # one trip through the event loop, as a real call makes
            return CallResult("the answer is 42", 8, 4, 1e-6, 0.1, 1)

    collector = Collector(cfg)
    collector.callers = [Instant(t, cfg.retry) for t in cfg.ladder.tiers]
    wall, cpu = time.perf_counter(), time.process_time()
    stats = asyncio.run(collector.run())
    write_outputs(cfg, collector.journal, stats, per_day)
    return time.perf_counter() - wall, time.process_time() - cpu


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def bench_collect(
    calls: int = 2000,
    concurrency: int = 32,
    rounds: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("OPENAI_API_KEY", "stub")
    from train.collect.api import collect
    from train.collect.caller import RetryPolicy
    from train.collect.prompts import Prompt
    from train.collect.runner import CollectConfig
    from train.collect.scorers import build_scorer

    port = _free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve_stub, args=(port,), daemon=True
    )
    proc.start()
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_ready(base, proc)
        ladder = _ladder(base, concurrency)
        n_prompts = max(calls // len(ladder), 1)
        texts = [f"q{i} what is six times seven, briefly?" for i in range(n_prompts)]
        prompts = [
            Prompt(f"q{i}", ({"role": "user", "content": t},), t, "42", "bench")
            for i, t in enumerate(texts)
        ]
        log(f"warm-up: {min(64, n_prompts) * 2} calls")
        asyncio.run(_bare(ladder, texts[:64], concurrency))
        bare, ours = [], []
        for r in range(rounds):
            order = ("bare", "collect") if r % 2 == 0 else ("collect", "bare")
            log(f"round {r + 1}/{rounds}: {order[0]}, then {order[1]}")
            for side in order:  # alternating, so a drift in machine load hits both sides
                if side == "bare":
                    bare.append(_timed(lambda: asyncio.run(_bare(ladder, texts, concurrency))))
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = CollectConfig(
                        prompts,
                        ladder,
                        build_scorer("numeric"),
                        Path(tmp) / "out.csv",
                        retry=RetryPolicy(attempts=1),
                    )
                    ours.append(_timed(lambda cfg=cfg: collect(cfg)))
        own = []
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = CollectConfig(prompts, ladder, build_scorer("numeric"), Path(tmp) / "out.csv")
                own.append(_own_overhead(cfg))
        made = n_prompts * len(ladder)
        own_wall, own_cpu = min(own)
        b_wall, b_cpu, b_lat = min(bare, key=lambda x: x[0])
        c_wall, c_cpu, c_out = min(ours, key=lambda x: x[0])
        if c_out.stats.calls != made or c_out.stats.errors:
            raise RuntimeError(
                f"collect made {c_out.stats.calls} calls, {c_out.stats.errors} failed"
            )
        return {
            "calls": made,
            "concurrency": concurrency,
            "rounds": rounds,
            "bare": {
                "seconds": b_wall,
                "calls_per_s": made / b_wall,
                "cpu_ms_per_call": b_cpu / made * 1000,
                "latency_ms_p50": statistics.median(b_lat),
            },
            "collect": {
                "seconds": c_wall,
                "calls_per_s": made / c_wall,
                "cpu_ms_per_call": c_cpu / made * 1000,
                "latency_ms_p50": c_out.summary["tiers"][0]["latency_ms_p50"],
            },
            "overhead_ms_per_call": {
                "wall": (c_wall - b_wall) / made * 1000,
                "cpu": (c_cpu - b_cpu) / made * 1000,
            },
            "own_ms_per_call": {
                "wall": own_wall / made * 1000,
                "cpu": own_cpu / made * 1000,
            },
        }
    finally:
        proc.terminate()
        proc.join(10)


def markdown(res: dict[str, Any]) -> str:
    b, c, o = res["bare"], res["collect"], res["overhead_ms_per_call"]
    lines = [
        f"{res['calls']} calls at concurrency {res['concurrency']} against a loopback stub "
        f"(best of {res['rounds']})",
        "",
        "| client | calls/s | seconds | CPU ms/call | p50 latency ms |",
        "|---|---:|---:|---:|---:|",
        f"| bare litellm.acompletion | {b['calls_per_s']:.0f} | {b['seconds']:.2f} | "
        f"{b['cpu_ms_per_call']:.2f} | {b['latency_ms_p50']:.1f} |",
        f"| rung collect | {c['calls_per_s']:.0f} | {c['seconds']:.2f} | "
        f"{c['cpu_ms_per_call']:.2f} | {c['latency_ms_p50']:.1f} |",
        "",
        f"collect - bare, per call: {o['wall']:.2f} ms wall, {o['cpu']:.2f} ms CPU "
        "(the difference of two live runs: noisy on a shared machine)",
        f"rung's own overhead per call (model calls that return at once, no LiteLLM): "
        f"{res['own_ms_per_call']['wall']:.3f} ms wall, {res['own_ms_per_call']['cpu']:.3f} ms CPU",
    ]
    return "\n".join(lines)


def run(args: Any) -> int:
    import json

    res = bench_collect(
        args.calls, args.concurrency or 32, args.rounds, log=lambda m: print(m, file=sys.stderr)
    )
    print(markdown(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0
