"""`rung train`: build a model bundle from labelled queries or outcome tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from train.commands.common import add_format_arg, add_ladder_arg, load_ladder, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a bundle from labelled queries or outcome tables")
    p.add_argument("--data", nargs="+", required=True, help="files or folders")
    p.add_argument("--out", type=Path, required=True, help="bundle folder, e.g. models/NAME")
    add_ladder_arg(p)
    add_format_arg(p)
    p.add_argument(
        "--embedder",
        choices=["static", "transformer"],
        default="static",
        help="static: distilled MiniLM, ~60 us (default); transformer: int8 ONNX MiniLM, ~2 ms",
    )
    p.add_argument(
        "--embedder-path",
        type=Path,
        default=None,
        help="local sentence-transformers folder (default: the shipped MiniLM)",
    )
    p.add_argument(
        "--quality-share",
        type=float,
        default=0.95,
        help="threshold target: keep this share of top-tier quality (default 0.95)",
    )
    p.add_argument(
        "--no-holdout",
        action="store_true",
        help="train on every row (default: hold out the fixed 20%% hash split)",
    )
    p.add_argument(
        "--class-weight",
        choices=["none", "balanced"],
        default="none",
        help="none keeps p_sufficient calibrated (default); balanced re-weights",
    )
    p.add_argument(
        "--decision",
        choices=["utility", "threshold"],
        default="utility",
        help="default rule: utility = argmax p_correct - lambda x estimated cost (default); "
        "threshold = cheapest tier with p_sufficient >= threshold. Both are calibrated",
    )
    p.add_argument(
        "--head",
        choices=["auto", "logreg", "mlp", "knn", "ensemble"],
        default="auto",
        help="head family; auto (default) picks by cross-validated routing quality "
        "(utility-curve AUC on out-of-fold predictions), logreg unless another adds > 0.005",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help="train on a stratified sample (per tier) of at most this many rows (default: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from serve.model.policy import Rule
    from train.cli import CommandError
    from train.data.types import SourceFormat
    from train.embedders.base import EmbedderChoice
    from train.fit.families import HeadFamily
    from train.fit.heads import ClassWeight
    from train.fit.pipeline import TrainConfig, train_bundle
    from train.fit.threshold import ThresholdTarget

    if not 0.0 < args.quality_share <= 1.0:
        raise CommandError("--quality-share must lie in (0, 1]")
    if args.max_rows is not None and args.max_rows < 10:
        raise CommandError("--max-rows must be at least 10 (or leave it out to use every row)")
    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        ladder=load_ladder(args.ladder),
        embedder=EmbedderChoice(args.embedder),
        embedder_path=args.embedder_path,
        fmt=SourceFormat(args.fmt) if args.fmt else None,
        holdout=not args.no_holdout,
        target=ThresholdTarget(args.quality_share),
        seed=args.seed,
        class_weight=ClassWeight(args.class_weight),
        progress=not args.quiet,
        overwrite=args.overwrite,
        decision=Rule(args.decision),
        head=HeadFamily(args.head),
        max_rows=args.max_rows,
    )
    result = train_bundle(cfg)
    summarise(result)
    return 0


def summarise(result) -> None:  # noqa: ANN001 - TrainResult, imported lazily
    m = result.manifest
    print(f"\nbundle {result.bundle}  version {m.version}")
    print(
        f"embedder {m.embedder.kind.value} ({m.embedder.source}), threshold {m.threshold:.4f}"
        f" (target: {m.threshold_target['quality_share']:.0%} of top-tier quality)"
    )
    print(
        f"rows: {result.train_rows} train, {result.test_rows} held out; "
        f"{m.data['bad_rows']} bad rows skipped; time {result.seconds['total']:.1f} s"
    )
    if m.decision:
        d = m.decision
        learned = [t for t, x in zip(m.ladder.names, m.cost_model["learned"], strict=True) if x]
        print(
            f"decision: {d['rule']} at quality {d['default_quality']:g} (setting {d['value']:.4g}"
            f"); answer lengths learned for {', '.join(learned) or 'no tier'} (else the "
            "ladder's output_tokens)"
        )
        _rules_table(m)
    print()
    rows = []
    for split in ("validation", "test"):
        s = m.metrics.get(split)
        if not s:
            continue
        shares = " / ".join(f"{v:.0%}" for v in s["traffic_share"].values())
        rows.append(
            [
                split,
                s["rows"],
                s["quality"],
                s["top_tier_quality"],
                s["quality_share_of_top"],
                s["cost_share_of_top"],
                shares,
            ]
        )
    print("threshold rule:")
    tiers = "/".join(m.ladder.names)
    print_table(
        rows,
        [
            "split",
            "rows",
            "quality",
            "top quality",
            "share of top quality",
            "share of top cost",
            f"traffic {tiers}",
        ],
    )


def _rules_table(m) -> None:  # noqa: ANN001 - Manifest
    """Both rules at their defaults: out-of-fold (validation) and held out (test)."""
    cal = m.decision.get("calibration", {})
    test = m.metrics.get("test", {}).get("rules", {})
    rows = []
    for rule in ("utility", "threshold"):
        v, t = cal.get(rule, {}), test.get(rule, {})
        rows.append(
            [
                rule,
                v.get("quality_share_of_top", float("nan")),
                v.get("cost_share_of_top", float("nan")),
                v.get("curve_auc", float("nan")),
                t.get("quality_share_of_top", float("nan")),
                t.get("cost_share_of_top", float("nan")),
            ]
        )
    print_table(
        rows,
        [
            "rule",
            "validation quality share",
            "validation cost share",
            "validation curve AUC",
            "test quality share",
            "test cost share",
        ],
    )
