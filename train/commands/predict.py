"""`rung predict`: one JSON line per input row with its tier, probabilities and estimated cost;
with `--sweep N`, the tier at N settings of the bundle's knob as well."""

from __future__ import annotations

import argparse
from pathlib import Path

from train.commands.common import add_format_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="route every row of a file with a bundle")
    p.add_argument("--model", type=Path, required=True, help="bundle folder")
    p.add_argument("--data", nargs="+", required=True, help="files or folders")
    p.add_argument("--out", type=Path, required=True, help="output JSONL")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decide by the threshold rule at this threshold instead of the bundle's default",
    )
    p.add_argument(
        "--quality",
        type=float,
        default=None,
        help="the bundle's rule at this quality knob in (0, 1] (default: its calibrated one)",
    )
    p.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="N",
        help="also write, per row, the tier at N settings of the knob from cheapest to best "
        "(a `sweep` list; the settings go to OUT.sweep.json)",
    )
    add_format_arg(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.fit.predict import predict_files

    n = predict_files(
        args.model,
        args.data,
        args.out,
        threshold=args.threshold,
        fmt=args.fmt,
        quality=args.quality,
        sweep=args.sweep,
    )
    print(f"wrote {n} predictions to {args.out}")
    if args.sweep:
        from train.fit.predict import sweep_path

        print(f"wrote the {args.sweep} sweep settings to {sweep_path(args.out)}")
    return 0
