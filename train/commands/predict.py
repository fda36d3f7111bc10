"""`rung predict`: one JSON line per input row with its tier and p_sufficient."""

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
        "--threshold", type=float, default=None, help="override the bundle's calibrated threshold"
    )
    add_format_arg(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.fit.predict import predict_files

    n = predict_files(args.model, args.data, args.out, threshold=args.threshold, fmt=args.fmt)
    print(f"wrote {n} predictions to {args.out}")
    return 0
