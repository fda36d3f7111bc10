"""The `rung` console script: parses arguments and calls library functions, nothing more.

Each subcommand lives in `train/commands/<name>.py` with `register(subparsers)`; modules
import their heavy libraries inside the handler, so `rung serve` never loads sklearn or torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
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


class Refused(CommandError):
    """A model that fails the serving checks was refused (promote, rollback, serve): exit 1."""


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
    try:
        status = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at exit as an ignored exception
        return status
    except BrokenPipeError:  # `rung eval ... | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user errors from any layer end as one clear line
        if _is_user_error(exc):
            print(f"rung {args.command}: error: {exc}", file=sys.stderr)
            return _exit_status(exc)
        raise


def _is_user_error(exc: Exception) -> bool:
    from serve.model.errors import RungError

    return isinstance(exc, CommandError | RungError | FileNotFoundError)


def _exit_status(exc: Exception) -> int:
    """1 for a refused model (the command ran and said no), 2 for every other mistake."""
    from serve.model.checks import BundleRefused

    return 1 if isinstance(exc, Refused | BundleRefused) else 2


if __name__ == "__main__":
    sys.exit(main())
