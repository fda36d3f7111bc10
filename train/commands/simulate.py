"""`rung simulate`: replay outcome data as a gateway cascade, writing escalation logs."""

from __future__ import annotations

import argparse
from pathlib import Path

from train.commands.common import add_format_arg, add_ladder_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="replay outcome data as a gateway cascade -> logs",
        description="Route each row with the model, try the routed tier and "
        "escalate one tier on failure until success or the top, "
        "writing one escalation-log line per request.",
    )
    p.add_argument(
        "--outcomes",
        nargs="+",
        required=True,
        help="outcome tables (RouterBench, RouteLLM, LLMRouter or labelled layout)",
    )
    p.add_argument("--model", type=Path, required=True, help="bundle folder that routes")
    p.add_argument("--out", type=Path, required=True, help="output JSONL log")
    add_ladder_arg(p)
    add_format_arg(p)
    p.add_argument(
        "--explore",
        type=float,
        default=0.0,
        help="share of requests started one tier below the decision (default 0)",
    )
    p.add_argument(
        "--threshold", type=float, default=None, help="override the bundle's calibrated threshold"
    )
    p.add_argument("--seed", type=int, default=0, help="replay order and exploration draws")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.commands.common import load_ladder
    from train.data.types import SourceFormat
    from train.loop.simulate import SimConfig, simulate

    cfg = SimConfig(
        outcomes=args.outcomes,
        model=args.model,
        out=args.out,
        ladder=load_ladder(args.ladder) if args.ladder else None,
        explore=args.explore,
        seed=args.seed,
        threshold=args.threshold,
        fmt=SourceFormat(args.fmt) if args.fmt else None,
    )
    summary = simulate(cfg)
    for line in summary.lines():
        print(line)
    print(f"wrote {summary.requests} requests to {args.out}")
    return 0
