"""`rung bench serve`: the real server against a no-op FastAPI floor, in the same run.

Three servers run as subprocesses on loopback with the same uvicorn flags (uvloop, httptools,
one worker, no access log): `rung serve`, the same with its fast lane off, and the no-op
floor. Latency rounds alternate between them so machine noise hits all alike; the client and
server plumbing is in `serve.bench.net`. Request counts are bounded and everything stays on
127.0.0.1. In-process figures time the decision itself, without HTTP.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve.bench.net import (
    UVICORN_FLAGS,
    free_port,
    http_latency,
    percentiles,
    post_bytes,
    server,
    throughput,
)
from serve.model.errors import RungError

# Written for the benchmark; rotated so no single text is repeated back to back.
SHORT = [
    "What is the capital of Australia?",
    "Translate 'thank you very much' into Spanish.",
    "hi! can you help me with something?",
    "Is 221 a prime number?",
    "Give me three synonyms for happy.",
    "Fix the typo: recieve",
    "What time zone is Tokyo in?",
    "Write a haiku about coffee.",
]
_SENTENCES = [
    "Our team is migrating a payments service from a monolith to several smaller services.",
    "The old system writes every transaction to one Postgres database with strict locking.",
    "We need to keep exactly-once semantics for refunds while traffic doubles each winter.",
    "Explain which consistency model fits, how to design the outbox and idempotency keys,",
    "and what failure modes appear when a consumer crashes halfway through a batch.",
    "Please compare two-phase commit, sagas with compensating actions and event sourcing,",
    "give a migration plan in stages with rollback points, and list the metrics to watch.",
    "Assume a small team of four engineers, a six month deadline and a strict audit trail.",
    "Point out anything in this plan that sounds risky, naive or more expensive than needed.",
]


def words_text(n_words: int, shift: int = 0) -> str:
    words = " ".join(_SENTENCES[shift:] + _SENTENCES[:shift]).split()
    while len(words) < n_words:
        words += words
    return " ".join(words[:n_words])


LONG = [words_text(150, i) for i in range(len(_SENTENCES))]


@dataclass
class BenchConfig:
    model: Path
    requests: int = 3000  # timed sequential HTTP requests per server
    rounds: int = 10  # the timed requests are split into this many alternating rounds
    warmup: int = 300
    concurrency: int = 8  # connections for the throughput phase
    load_requests: int = 4000  # requests per server in the throughput phase
    in_process: int = 5000  # decisions per input set in-process
    timeout_s: float = 60.0
    log: Callable[[str], None] = print


def in_process(model: Path, n: int) -> dict[str, Any]:
    """Decision latency without HTTP: `classify_one_json` (text in, response bytes out), what
    the /classify handler runs after validation."""
    from serve.api.decision import Explorer, Query, classify_one_json
    from serve.api.settings import Settings
    from serve.api.state import ModelHolder

    start = time.perf_counter()
    served = ModelHolder(Settings(model=model, poll_seconds=0)).load_first()
    load_s = time.perf_counter() - start
    explorer = Explorer(0.0)
    out: dict[str, Any] = {"load_s": load_s}
    shortcut = getattr(served.router.embedder, "shortcut", None)
    sets = (
        ("short", SHORT, False),
        ("150 words", LONG, False),
        ("150 words, cold word cache", LONG, True),
    )
    out["graph"] = graph_run(served.router, 10 * n)
    for label, texts, cold in sets:
        setting = served.router.default_setting
        queries = [Query(t, setting, 0, len(served.names) - 1) for t in texts]
        for q in queries * 50:  # warm up
            classify_one_json(served, q, explorer)
        times, cpu = [], []
        clock, cpu_clock = time.perf_counter, time.thread_time
        for i in range(n):
            q = queries[i % len(queries)]
            if cold and shortcut is not None:
                shortcut.chunks.clear()  # every chunk and word unseen: the worst case of
                shortcut.cache.clear()  # serve/model/fasttok.py
            c0, t0 = cpu_clock(), clock()
            classify_one_json(served, q, explorer)
            times.append(clock() - t0)
            cpu.append(cpu_clock() - c0)
        out[label] = percentiles(times)
        # CPU time of this thread: what the call costs when no other process preempts it
        out[label]["cpu_p99_ms"] = float(np.percentile(np.asarray(cpu) * 1e3, 99))
    return out


def graph_run(router: Any, n: int) -> dict[str, Any]:
    """One run of the classifier graph on one row, as the single-text path makes it (its bound
    input and outputs): the part of a decision that grows with the graph's node count."""
    router.estimates_one(LONG[0])  # leaves the text's features in this thread's bound row
    session, binding = router.classifier, router._bound_row().binding
    for _ in range(min(n, 500)):
        session.run_with_iobinding(binding)
    times = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        session.run_with_iobinding(binding)
        times.append(clock() - t0)
    us = np.asarray(times) * 1e6
    return {
        "nodes": router.manifest.classifier.get("graph_nodes"),  # None: an older bundle
        "p50_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with_name = Path("/proc/cpuinfo")
    if with_name.is_file():
        for line in with_name.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg_1m": os.getloadavg()[0],
    }


def run(cfg: BenchConfig) -> dict[str, Any]:
    if not (cfg.model / "manifest.json").is_file():
        raise RungError(f"no model bundle at {cfg.model}")
    log = cfg.log
    result: dict[str, Any] = {"machine_start": machine(), "model": str(cfg.model.resolve())}
    log(f"in-process: {cfg.in_process} decisions per input set ...")
    result["in_process"] = in_process(cfg.model, cfg.in_process)

    body = [json.dumps({"text": t}).encode() for t in SHORT]
    requests = [post_bytes("/classify", b) for b in body]
    env = {**os.environ, "RUNG_MODEL": str(cfg.model.resolve())}
    for key in (
        "RUNG_MODELS_DIR",
        "RUNG_API_KEY",
        "RUNG_LOG_REQUESTS",
        "RUNG_EXPLORE_RATE",
        "RUNG_FAST_LANE",
    ):
        env.pop(key, None)
    real_cmd = [
        sys.executable,
        "-m",
        "train.cli",
        "serve",
        "--model",
        str(cfg.model.resolve()),
        "--log-level",
        "warning",
    ]
    noop_cmd = [sys.executable, "-m", "uvicorn", "serve.bench.noop:app", *UVICORN_FLAGS]
    route_env = {**env, "RUNG_FAST_LANE": "false"}
    log("starting rung serve (fast lane on, and off) and the no-op floor ...")
    ports = {name: free_port() for name in ("rung", "route", "noop")}
    with (
        server(
            "rung", [*real_cmd, "--port", str(ports["rung"])], ports["rung"], env, cfg.timeout_s
        ) as real,
        server(
            "route",
            [*real_cmd, "--port", str(ports["route"])],
            ports["route"],
            route_env,
            cfg.timeout_s,
        ) as route,
        server(
            "noop", [*noop_cmd, "--port", str(ports["noop"])], ports["noop"], env, cfg.timeout_s
        ) as noop,
    ):
        servers = [real, route, noop]
        result["cold_start_s"] = {s.name: s.cold_start_s for s in servers}
        log(f"HTTP latency: {cfg.requests} sequential requests each, {cfg.rounds} rounds ...")
        result["http"] = http_latency(servers, requests, cfg.requests, cfg.rounds, cfg.warmup)
        log(
            f"throughput: {cfg.load_requests} requests each over {cfg.concurrency} "
            "connections, best of two ..."
        )
        rps: dict[str, list[float]] = {s.name: [] for s in servers}
        cpu: dict[str, float] = {s.name: 0.0 for s in servers}
        for s in servers + servers[::-1]:
            before = s.cpu_s()
            rps[s.name].append(throughput(s.port, requests, cfg.load_requests, cfg.concurrency))
            cpu[s.name] += s.cpu_s() - before
        result["throughput_rps"] = {k: max(v) for k, v in rps.items()}
        # Requests per second of the server's own CPU time: what one core sustains when the
        # server has it to itself, independent of what else the machine (or the load client
        # on the same machine) is doing.
        result["requests_per_cpu_s"] = {
            k: 2 * cfg.load_requests / v if v > 0 else float("nan") for k, v in cpu.items()
        }
        result["rss_mb"] = {s.name: s.rss_mb() for s in servers}
    result["machine_end"] = machine()
    result["settings"] = {k: v for k, v in vars(cfg).items() if k not in ("log", "model")}
    return result


@dataclass
class Row:
    metric: str
    rung: float
    floor: float | None
    target: str
    ok: bool | None
    unit: str = "ms"
    extra: list[str] = field(default_factory=list)


def rows(res: dict[str, Any]) -> list[Row]:
    http, ip = res["http"], res["in_process"]
    ratio = http["rung"]["p50_ms"] / http["noop"]["p50_ms"]
    tput = res["throughput_rps"]
    out = [
        Row(
            "HTTP p50 (short text)",
            http["rung"]["p50_ms"],
            http["noop"]["p50_ms"],
            "< 1 ms",
            http["rung"]["p50_ms"] < 1.0,
        ),
        Row("HTTP p50 / no-op p50", ratio, None, "<= 1.6x", ratio <= 1.6, "x"),
        Row("HTTP p99 (short text)", http["rung"]["p99_ms"], http["noop"]["p99_ms"], "", None),
        Row(
            "HTTP p50, fast lane off (RUNG_FAST_LANE=false)",
            http["route"]["p50_ms"],
            http["noop"]["p50_ms"],
            "",
            None,
        ),
        Row(
            "... its ratio to the no-op p50",
            http["route"]["p50_ms"] / http["noop"]["p50_ms"],
            None,
            "",
            None,
            "x",
        ),
    ]
    graph = ip.get("graph")
    if graph:
        nodes = f", {graph['nodes']} nodes" if graph["nodes"] else ""
        out.append(
            Row(
                f"classifier graph p50 per run (one row{nodes})",
                graph["p50_us"],
                None,
                "",
                None,
                "us",
            )
        )
    for label in ("short", "150 words", "150 words, cold word cache"):
        p = ip[label]
        out.append(Row(f"in-process p50 ({label})", p["p50_ms"], None, "", None))
        target = "< 0.5 ms" if "cold" not in label else ""
        out.append(
            Row(
                f"in-process p99 ({label})",
                p["p99_ms"],
                None,
                target,
                p["p99_ms"] < 0.5 if target else None,
            )
        )
        out.append(Row(f"in-process max ({label})", p["max_ms"], None, "", None))
        out.append(Row(f"in-process p99 CPU time ({label})", p["cpu_p99_ms"], None, "", None))
    share = tput["rung"] / tput["noop"]
    out += [
        Row(
            "throughput, 1 worker",
            tput["rung"],
            tput["noop"],
            ">= 0.5x no-op",
            share >= 0.5,
            "req/s",
        ),
        Row("throughput, fast lane off", tput["route"], tput["noop"], "", None, "req/s"),
    ]
    per_cpu = res.get("requests_per_cpu_s")
    if per_cpu:
        out.append(
            Row(
                "requests per server CPU-second (one core)",
                per_cpu["rung"],
                per_cpu["noop"],
                "",
                None,
                "req/s",
            )
        )
    out += [
        Row(
            "RSS after load",
            res["rss_mb"]["rung"],
            res["rss_mb"]["noop"],
            "< 200 MB",
            res["rss_mb"]["rung"] < 200,
            "MB",
        ),
        Row(
            "cold start to /readyz 200",
            res["cold_start_s"]["rung"],
            res["cold_start_s"]["noop"],
            "< 2 s",
            res["cold_start_s"]["rung"] < 2.0,
            "s",
        ),
        Row("model load + smoke (in-process)", ip["load_s"], None, "", None, "s"),
    ]
    return out


def _num(x: float, unit: str) -> str:
    if unit == "req/s":
        return f"{x:,.0f} req/s"
    if unit == "x":
        return f"{x:.2f}x"
    if unit == "ms":
        return f"{x:.3f} ms"
    return f"{x:.2f} {unit}"


def markdown(res: dict[str, Any]) -> str:
    m0, m1 = res["machine_start"], res["machine_end"]
    lines = [
        "| metric | rung | no-op FastAPI floor | target | met |",
        "|---|---:|---:|---|:-:|",
    ]
    for r in rows(res):
        floor = _num(r.floor, r.unit) if r.floor is not None else ""
        ok = "" if r.ok is None else ("yes" if r.ok else "NO")
        lines.append(f"| {r.metric} | {_num(r.rung, r.unit)} | {floor} | {r.target} | {ok} |")
    lines += [
        "",
        f"Machine: {m0['cpus']} cores ({m0['cpu']}), Python {m0['python']}, loopback; "
        f"1-minute load average {m0['loadavg_1m']:.2f} at start, {m1['loadavg_1m']:.2f} at end.",
        f"Bundle: {res['model']}.",
        "No-op floor: a FastAPI `async def` POST /classify on the same uvicorn flags (uvloop, "
        "httptools, 1 worker, no access log) that reads the same body, parses its JSON and "
        "returns a constant response of the same shape. rung answers POST /classify from its "
        "ASGI fast lane (serve/lane.py); the fast-lane-off rows are the same server with "
        "RUNG_FAST_LANE=false, i.e. through FastAPI's routing. Client: one raw keep-alive socket, "
        "pre-encoded requests, rounds alternating between servers; throughput: "
        f"{res['settings']['concurrency']} keep-alive connections, closed loop, best of two "
        "runs; in-process: `classify_one_json` (text to response bytes) on 8 short and 8 "
        "150-word texts, back to back (the word cache warm, as under steady traffic; the cold "
        "rows empty it before every call); wall clock, plus this thread's CPU time (the same "
        "calls without the time other processes held the core).",
    ]
    return "\n".join(lines)
