"""`rung eval`: score a bundle (or compare bundles) on outcome tables or labelled queries."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from train.commands.common import add_format_arg, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="quality against cost of a bundle, against every baseline")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", type=Path, help="bundle folder, e.g. models/NAME")
    who.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="MODEL",
        help="two or more bundles scored side by side on the same rows",
    )
    p.add_argument("--data", nargs="+", required=True, help="files or folders")
    p.add_argument(
        "--ladder",
        type=Path,
        default=None,
        help="ladder TOML for prices and pass mark (default: the bundle's own "
        "ladder; must have the same tier names)",
    )
    add_format_arg(p)
    p.add_argument(
        "--split",
        choices=["all", "holdout", "train", "unseen"],
        default="all",
        help="rows to score: all (default); holdout = the fixed hash split rung "
        "train holds out; train = its complement; unseen = rows no given "
        "bundle trained on",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="score the threshold rule at this threshold as the default operating point "
        "(default: the bundle's own rule at its calibrated setting)",
    )
    p.add_argument(
        "--quality",
        type=float,
        default=None,
        help="default operating point: the bundle's rule at this quality knob, in (0, 1] "
        "(bundles with a calibration table, schema 2)",
    )
    p.add_argument(
        "--requests-per-day",
        type=int,
        default=10_000,
        help="traffic for the monthly cost projection of the operating point (default 10000)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="write report.json and report.html into this folder",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="also save the quality-against-cost figure as this PNG file",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from serve.model.ladder import Ladder
    from train.cli import CommandError
    from train.evaluation.evaluate import compare, evaluate
    from train.evaluation.projection import monthly_projection, projection_line
    from train.evaluation.report import compare_rows, headline_rows, summary_rows, write_report

    if args.requests_per_day < 1:
        raise CommandError("--requests-per-day must be >= 1")
    ladder = Ladder.from_toml(args.ladder) if args.ladder else None
    if args.compare:
        if args.threshold is not None or args.quality is not None:
            raise CommandError(
                "--threshold / --quality apply to --model only; compare uses each bundle's"
            )
        with _progress(args.quiet) as bar:
            result = compare(args.compare, args.data, ladder, args.fmt, args.split, progress=bar)
        doc = result.to_dict()
        _print_data(doc["data"])
        _table(compare_rows(doc["models"]))
        for rep in doc["reports"]:
            print(f"\n{rep['model']['label']}: {rep['verdict']['summary']}")
            rep["projection"] = monthly_projection(rep["default"], args.requests_per_day)
            print(f"  monthly: {projection_line(rep['projection'])}")
        for g in doc["gate"]:
            print(
                f"\npromotion gate, {g['candidate']} vs {g['base']}: {g['verdict']} ({g['reason']})"
            )
    else:
        with _progress(args.quiet) as bar:
            res = evaluate(
                args.model,
                args.data,
                ladder,
                args.fmt,
                args.split,
                args.threshold,
                quality=args.quality,
                progress=bar,
            )
        doc = res.to_dict()
        _print_data(doc["data"])
        _table(summary_rows(doc))
        print()
        _table(headline_rows(doc))
        print()
        for line in [*doc["verdict"]["details"], doc["verdict"]["summary"]]:
            print(line)
        doc["projection"] = monthly_projection(doc["default"], args.requests_per_day)
        print(f"\nmonthly: {projection_line(doc['projection'])}")
    if args.report:
        for path in write_report(doc, args.report):
            print(f"wrote {path}")
    if args.plot:
        _plot(doc, args.plot)
    return 0


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[int], None]]:
    """Rows read so far, on stderr when it is a terminal (the total is unknown while
    streaming); nothing with --quiet."""
    from tqdm.auto import tqdm

    with tqdm(desc="scoring", unit=" rows", disable=True if quiet else None) as bar:
        yield bar.update


def _print_data(data: dict) -> None:
    print(
        f"{data['rows']} rows (split {data['split']}: {data['split_rule']}); "
        f"{data['bad_rows']} bad rows skipped\n"
    )


def _table(header_rows: tuple[list[str], list[list[str]]]) -> None:
    header, rows = header_rows
    print_table(rows, header)


def _plot(doc: dict, path: Path) -> None:
    from train.evaluation.plots import cost_quality_plot
    from train.evaluation.report import clean

    doc = clean(doc)
    reports = doc.get("reports", [doc])
    ladder = reports[0]["ladder"]["name"]
    title = f"ladder {ladder}: {doc['data']['rows']} rows, split {doc['data']['split']}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cost_quality_plot(reports, title))
    print(f"wrote {path}")
