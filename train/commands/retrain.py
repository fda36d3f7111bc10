"""`rung retrain`: a candidate from the base model's data plus escalation logs, behind a gate."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="retrain from escalation logs; promote only if not worse",
        description="Merge the base model's training data with rows derived from escalation "
        "logs, train a candidate, score candidate and base on the newest logs "
        "(never trained on) and, with --promote, switch models/current only if the "
        "candidate is not worse (cost at 95% of top-tier quality, then "
        "calibration). Exit code 1 when a requested promotion was refused.",
    )
    p.add_argument("--base", type=Path, required=True, help="base bundle, e.g. models/current")
    p.add_argument("--logs", nargs="+", required=True, help="escalation log files or folders")
    p.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="base training data (default: the files the base manifest records)",
    )
    p.add_argument("--out", type=Path, required=True, help="candidate bundle, e.g. models/NAME")
    p.add_argument(
        "--promote",
        action="store_true",
        help="switch OUT's models folder's `current` to the candidate if the gate passes",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even if the gate refuses (implies --promote; recorded in the manifest)",
    )
    p.add_argument(
        "--holdout-share",
        type=float,
        default=0.2,
        help="newest share of log requests held out for the gate (default 0.2)",
    )
    p.add_argument(
        "--gate-quality-share",
        type=float,
        default=0.95,
        help="gate criterion: cost of reaching this share of always-top quality (default 0.95)",
    )
    p.add_argument(
        "--gate-min-rows",
        type=int,
        default=50,
        help="held-out requests with every tier's outcome known needed to judge (default 50)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.evaluation.gate import GateCriterion
    from train.loop.retrain import RetrainConfig, RetrainError, outcome_text, retrain

    if not 0.0 < args.gate_quality_share <= 1.0 or args.gate_min_rows < 1:
        raise RetrainError("--gate-quality-share must lie in (0, 1] and --gate-min-rows be >= 1")

    cfg = RetrainConfig(
        base=args.base,
        logs=args.logs,
        out=args.out,
        data=args.data,
        promote=args.promote,
        force=args.force,
        holdout_share=args.holdout_share,
        criterion=GateCriterion(args.gate_quality_share, min_rows=args.gate_min_rows),
        seed=args.seed,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    result = retrain(cfg)
    print()
    for line in outcome_text(result, args.promote or args.force):
        print(line)
    refused = (args.promote or args.force) and not result.promoted
    return 1 if refused else 0
