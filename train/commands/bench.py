"""`rung bench` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="(not built yet)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.cli import CommandError

    raise CommandError("rung bench is not built yet")
