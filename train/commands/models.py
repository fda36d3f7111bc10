"""`rung models list | promote NAME | rollback`: the versions in a models folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from serve.model.bundle import BundleError
from train.commands.common import print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, promote or roll back model versions")
    _models_dir(p, Path("models"))
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="versions with their metrics and lineage")
    ls.add_argument("--json", action="store_true", help="one JSON object per model")
    promote = actions.add_parser("promote", help="point `current` at NAME (atomic)")
    promote.add_argument("name")
    rollback = actions.add_parser("rollback", help="point `current` back to the previous model")
    for action in (ls, promote, rollback):  # accepted after the action too
        _models_dir(action, argparse.SUPPRESS)
    p.set_defaults(handler=run)


def _models_dir(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=default,
        help="folder of bundles with the `current` pointer (default: models/)",
    )


def run(args: argparse.Namespace) -> int:
    from serve.model import registry
    from serve.model.checks import BundleRefused
    from train.cli import Refused

    if args.action in ("promote", "rollback"):
        try:
            previous = registry.current_target(args.models_dir)
        except BundleError:  # a pointer to a deleted bundle may still be moved
            previous = None
    if args.action == "promote":
        try:
            registry.set_current(args.models_dir, args.name)
        except BundleRefused as exc:
            raise Refused(_refusal(args, args.name, previous, exc)) from None
        print(
            f"{args.models_dir}/current -> {args.name}"
            + (f" (was {previous.name})" if previous else "")
        )
        _warn_ladder_change(previous, args.models_dir / args.name)
    elif args.action == "rollback":
        try:
            target = registry.rollback(args.models_dir)
        except BundleRefused as exc:
            stack = registry.promotion_stack(args.models_dir)
            name = stack[-2] if len(stack) > 1 else "?"
            raise Refused(_refusal(args, name, previous, exc)) from None
        print(
            f"{args.models_dir}/current -> {target.name} (rolled back from "
            f"{previous.name if previous else 'nothing'})"
        )
        _warn_ladder_change(previous, target)
    else:
        list_models(args.models_dir, as_json=args.json)
    return 0


def _warn_ladder_change(previous: Path | None, target: Path) -> None:
    """Running servers refuse a bundle with other tier names (unless RUNG_ALLOW_LADDER_CHANGE):
    say so now rather than let the move look like it worked."""
    from serve.model.bundle import read_manifest

    if previous is None:
        return
    try:
        old = read_manifest(previous).ladder.names
    except BundleError:
        return
    new = read_manifest(target).ladder.names
    if old != new:
        print(
            f"warning: the ladder changes from {old} to {new}; running servers keep the old "
            "bundle until restarted (or RUNG_ALLOW_LADDER_CHANGE=true), and gateways must "
            "know the new tier names",
            file=sys.stderr,
        )


def _refusal(args: argparse.Namespace, name: str, previous: Path | None, exc: Exception) -> str:
    kept = f"{args.models_dir}/current still -> {previous.name}" if previous else "not moved"
    return f"refused {name}: {exc}; {kept}"


def _test_figures(metrics: dict[str, Any]) -> tuple[str, str]:
    split = metrics.get("test") or metrics.get("validation") or {}
    q, c = split.get("quality_share_of_top"), split.get("cost_share_of_top")
    which = "test" if "test" in metrics else "val"
    return (
        f"{q:.1%} ({which})" if isinstance(q, float) else "-",
        f"{c:.1%}" if isinstance(c, float) else "-",
    )


def _lineage(lineage: dict[str, Any]) -> str:
    if not lineage:
        return "-"
    if lineage.get("kind") != "retrain":
        return json.dumps(lineage)[:60]
    base = lineage.get("base", {}).get("version", "?")
    logs = lineage.get("logs", [])
    requests = sum(int(entry.get("requests") or 0) for entry in logs)
    gate = lineage.get("gate", {}).get("verdict", "?")
    forced = ", forced" if lineage.get("forced") else ""
    return f"from {base} + {len(logs)} log file(s), {requests} requests; gate {gate}{forced}"


def list_models(models_dir: Path, as_json: bool = False) -> None:
    from serve.model.registry import list_models as entries

    models = entries(models_dir)
    if as_json:
        for e in models:
            print(
                json.dumps(
                    {
                        "name": e.name,
                        "current": e.current,
                        "version": e.version,
                        "created_at": e.created_at,
                        "threshold": e.threshold,
                        "metrics": e.metrics,
                        "lineage": e.lineage,
                    }
                )
            )
        return
    if not models:
        print(f"no model bundles in {models_dir}")
        return
    rows = []
    for e in models:
        quality, cost = _test_figures(e.metrics)
        rows.append(
            [
                "*" if e.current else "",
                e.name,
                e.version,
                e.threshold,
                quality,
                cost,
                _lineage(e.lineage),
            ]
        )
    print_table(rows, ["", "name", "version", "threshold", "quality/top", "cost/top", "lineage"])
