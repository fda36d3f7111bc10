"""`rung collect`: measure every tier of a ladder on a team's own prompts."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from train.commands.common import print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="call every tier on your prompts, score the answers, write an outcome table",
    )
    p.add_argument("--prompts", nargs="+", required=True, help="JSONL or CSV files or folders")
    p.add_argument("--ladder", type=Path, required=True, help="ladder TOML with litellm_model")
    p.add_argument("--out", type=Path, required=True, help="outcome table to write, e.g. out.csv")
    p.add_argument(
        "--mode",
        choices=["all", "cascade"],
        default="all",
        help="all: every tier on every prompt (default); cascade: bottom-up, stop at the "
        "first tier that passes (cheaper; tiers above stay unknown)",
    )
    p.add_argument(
        "--scorer",
        default="exact",
        help="exact (default), choice, numeric, regex, contains, json, judge, or "
        "python:module:function",
    )
    p.add_argument("--json-schema", type=Path, default=None, help="JSON Schema for --scorer json")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-6,
        help="relative tolerance of --scorer numeric (default 1e-6)",
    )
    p.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop before the collection's spend (this journal's, judge included) passes USD",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N prompts only")
    p.add_argument(
        "--requests-per-day",
        type=int,
        default=10_000,
        help="traffic for the monthly cost projection (default 10000)",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=5,
        help="calls per pair at most, retries included (default 5)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


class _Bar:
    """tqdm with calls, errors and spend so far."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar: Any = None

    def start(self, total: int, unit: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True)

    def advance(self, calls: int, errors: int, spend: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"calls {calls}, errors {errors}, spend ${spend:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_args(args: argparse.Namespace) -> None:
    from train.cli import CommandError

    if args.limit is not None and args.limit < 1:
        raise CommandError("--limit must be >= 1")
    if args.max_cost is not None and not args.max_cost > 0:
        raise CommandError("--max-cost must be > 0 (USD)")
    if args.requests_per_day < 1:
        raise CommandError("--requests-per-day must be >= 1")
    if args.attempts < 1:
        raise CommandError("--attempts must be >= 1")
    if args.out.suffix != ".csv":
        raise CommandError("--out must name a .csv file (the outcome table)")


def run(args: argparse.Namespace) -> int:
    from serve.model.ladder import Ladder
    from train.collect.api import collect
    from train.collect.caller import RetryPolicy, TierCaller
    from train.collect.judge import Judge
    from train.collect.prompts import CollectError, read_prompts
    from train.collect.runner import CollectConfig, Mode, check_ladder

    _check_args(args)
    ladder = Ladder.from_toml(args.ladder)
    check_ladder(ladder)
    retry = RetryPolicy(attempts=args.attempts)
    judge = Judge(ladder.judge, retry) if args.scorer == "judge" and ladder.judge else None
    from train.collect.scorers import build_scorer

    scorer = build_scorer(args.scorer, judge, args.json_schema, args.tolerance)
    prompts = read_prompts(args.prompts)
    if args.limit:
        prompts = prompts[: args.limit]
    if scorer.needs_expected:
        lacking = [p for p in prompts if p.expected is None]
        if lacking:
            raise CollectError(
                f"--scorer {args.scorer} needs `expected` in every prompt; {len(lacking)} of "
                f"{len(prompts)} lack it (first at {lacking[0].source}); add it, or use "
                "--scorer judge / json / python:module:function"
            )
    for tier in ladder.tiers:  # a model LiteLLM cannot route, or a key not set: before the run
        TierCaller(tier, retry)
    cfg = CollectConfig(prompts, ladder, scorer, args.out, Mode(args.mode), args.max_cost, retry)
    print(
        f"collect: {len(prompts)} prompts x {len(ladder)} tiers ({args.mode}), scorer "
        f"{args.scorer}, journal {cfg.journal_path}",
        file=sys.stderr,
    )
    result = collect(cfg, _Bar(not args.quiet), args.requests_per_day)
    report(result.summary)
    print(f"\nwrote {result.table} ({result.rows} rows), {result.summary_path}")
    return 0


def _pct(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def _num(x: Any, fmt: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def report(doc: dict[str, Any]) -> None:
    print(f"\npass mark {doc['pass_mark']}; {doc['prompts']} prompts; mode {doc['mode']}")
    rows = [
        [
            t["tier"],
            t["model"],
            f"{t['scored']}/{t['prompts']}",
            f"{_pct(t['pass_rate'])} [{_pct(t['pass_rate_95ci'][0])}, "
            f"{_pct(t['pass_rate_95ci'][1])}]",
            _num(t["mean_cost_usd"]),
            _num(t["latency_ms_p50"], ".0f"),
            _num(t["latency_ms_p95"], ".0f"),
        ]
        for t in doc["tiers"]
    ]
    print_table(
        rows,
        ["tier", "model", "scored", "pass rate [95% CI]", "USD/request", "p50 ms", "p95 ms"],
    )
    print("\ngraduation: each tier against the one below")
    grad = [
        [
            f"{g['tier']} vs {g['versus']}",
            str(g["paired_prompts"]),
            f"{_signed(g['pass_rate_difference'])} [{_signed(g['difference_95ci'][0])}, "
            f"{_signed(g['difference_95ci'][1])}]",
            _times(g["cost_multiple"]),
            _times(g["latency_multiple"]),
        ]
        for g in doc["graduation"]
    ]
    print_table(grad, ["step", "paired", "quality gain [95% CI]", "cost", "latency"])
    per_day = doc["monthly"][0]["requests_per_day"] if doc["monthly"] else 0
    print(f"\nmonthly cost at {per_day:,} requests a day, all to one tier")
    print_table(
        [
            [m["tier"], _num(m["cost_per_request_usd"]), _usd(m["usd_per_month"])]
            for m in doc["monthly"]
        ],
        ["tier", "USD/request", "USD/month"],
    )
    j, r = doc["judge"], doc.get("run", {})
    if j["calls"]:
        print(f"\njudge: {j['calls']} calls, {j['errors']} errors, ${j['cost_usd']:.4f} (apart)")
    if r:
        print(
            f"\nthis run: {r['calls']} calls, {r['unknown']} unknown, {r['reused_from_journal']} "
            f"reused from the journal, spend ${r['spend_usd']:.4f} "
            f"(collection total ${r['spend_total_usd']:.4f})"
        )
        if r["stopped_for_budget"]:
            print(
                f"stopped before passing --max-cost ${r['max_cost_usd']}: {r['pending']} left; "
                "rerun with a higher --max-cost to go on"
            )
    if "note" in doc:
        print(f"note: {doc['note']}")


def _signed(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x * 100:+.1f} pts"


def _times(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}x"


def _usd(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"${x:,.2f}"
