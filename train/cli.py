"""The `rung` console script: parses arguments and calls library functions, nothing more.

Each subcommand lives in `train/commands/<name>.py` with `register(subparsers)`; modules
import their heavy libraries inside the handler, so `rung serve` never loads sklearn or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = (
    "collect",
    "train",
    "predict",
    "serve",
    "bench",
    "eval",
    "retrain",
    "models",
    "simulate",
)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rung",
        description="Predict the cheapest sufficient LLM tier for each request.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"train.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user errors from any layer end as one clear line
        if _is_user_error(exc):
            print(f"rung {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_user_error(exc: Exception) -> bool:
    from serve.model.errors import RungError

    return isinstance(exc, CommandError | RungError | FileNotFoundError)


if __name__ == "__main__":
    sys.exit(main())
