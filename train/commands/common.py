"""Argument helpers shared by subcommands (light imports only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serve.model.ladder import Ladder, default_ladder


def add_ladder_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ladder",
        type=Path,
        default=None,
        help="tier ladder TOML (default: built-in small / medium / large)",
    )


def load_ladder(path: Path | None) -> Ladder:
    return Ladder.from_toml(path) if path else default_ladder()


def add_format_arg(parser: argparse.ArgumentParser) -> None:
    from train.data.types import SourceFormat

    parser.add_argument(
        "--format",
        dest="fmt",
        choices=[f.value for f in SourceFormat],
        default=None,
        help="input layout (default: detected per file)",
    )


def print_table(rows: list[list[Any]], header: list[str], out: Any = None) -> None:
    """A plain aligned table: readable in a terminal and in CI logs."""
    out = out or sys.stdout
    cells = [[_fmt(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ),
            file=out,
        )
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
