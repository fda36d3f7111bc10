"""`rung bench train`: what training the default bundle costs, and how well the recipe routes.

Training runs in a child process so its wall time and peak RSS are the command's own (the
distilled static embedding is cached; `--cold` measures with an empty cache too). Routing
quality is measured on `../shared/data`: the default recipe trained on the fixed train split
and evaluated on the held-out split, against random mixing, the heuristic and the oracle.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from train.bench.child import CHILD, timed_train  # noqa: F401  (re-exported)

LADDERS = Path(__file__).resolve().parents[2] / "data" / "ladders"
# (name, data path under shared/, ladder TOML or None for the built-in default)
OUTCOME_SETS = (
    ("RouterBench (3 tiers)", "routerbench", None),
    ("RouteLLM MMLU (2 tiers)", "routellm/mmlu", "routellm_mmlu.toml"),
    ("LLMRouter (3 tiers)", "llmrouter/train.json", "llmrouter.toml"),
)


def routing_quality(bundle: Path, data: Path, ladder: Path | None) -> dict[str, Any]:
    from serve.model.ladder import Ladder
    from train.evaluation.evaluate import evaluate

    lad = Ladder.from_toml(ladder) if ladder else None
    result = evaluate(bundle, [data], ladder=lad, split="holdout")
    s, mt = result.summary(), result.metrics
    return {
        "rows": s["rows"],
        "auc_router": s["auc"],
        "auc_random": s["auc_random"],
        "auc_heuristic": s["auc_heuristic"],
        "auc_oracle": s["auc_oracle"],
        "gap_closed": s["gap_closed"],
        "cost_to_95_share_of_top": s["cost_to_95"] / mt["axis"]["top_cost"],
        "saving_vs_random_95": s["saving_vs_random_95"],
        "default_quality_share": s["quality_share_of_top"],
        "default_cost_share": s["cost_share_of_top"],
        "beats_random": mt["verdict"]["beats_random_at_default"],
        "beats_heuristic": mt["verdict"]["beats_heuristic_at_its_cost"],
        **decision_figures(mt),
    }


def decision_figures(mt: dict[str, Any]) -> dict[str, Any]:
    """Issue 11's targets: the rule's curve against random mixing and the threshold rule,
    APGR on both axes (two tiers), and the default point against cheaper always-tiers."""
    d, two = mt["default"], mt.get("two_tier") or {}
    cheaper = [
        a["tier"]
        for a in mt["always"]
        if a["cost"] < d["cost_usd"] - 1e-12 and a["quality"] >= d["quality"] - 1e-12
    ]
    return {
        "rule": d.get("rule", "threshold"),
        "default_label": d.get("label", ""),
        "gap_closed_threshold_rule": mt.get("gap_closed_threshold_rule", mt["gap_closed"]),
        "max_shortfall_vs_random": -min(mt["router_vs_random"]["min_difference"], 0.0),
        "default_margin_vs_random": d["quality"] - d["random_quality_at_same_cost"],
        "apgr_calls": two.get("router", {}).get("apgr"),
        "apgr_cost": two.get("router", {}).get("apgr_cost"),
        "cheaper_tier_matching_default": cheaper,
    }


def run(args: Any) -> int:
    data = getattr(args, "data", "data/queries")
    shared = Path(getattr(args, "shared", "../shared/data"))
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {sys.platform}"}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if getattr(args, "cold", False):
            env = {**os.environ, "RUNG_CACHE_DIR": str(tmpdir / "cache")}
            report["default_cold"] = timed_train([data], tmpdir / "cold", env=env)
        timed_train([data], tmpdir / "warmup")  # fills the cache when it is empty
        report["default_warm"] = timed_train([data], tmpdir / "default")
        sizes = getattr(args, "rows", None) or []
        if sizes:
            from train.bench.scale import run_scale

            report["scale"] = run_scale(Path(data), sizes, tmpdir)
        report["quality"] = {}
        for name, rel, ladder_file in OUTCOME_SETS:
            if getattr(args, "skip_quality", False):
                break
            path = shared / rel
            ladder = LADDERS / ladder_file if ladder_file else None
            if not path.exists():
                print(f"skipped {name}: {path} not found", file=sys.stderr)
                continue
            if ladder and not ladder.is_file():
                raise FileNotFoundError(f"ladder {ladder} for {name} is missing")
            bundle = tmpdir / rel.replace("/", "_")
            fit = timed_train([str(path)], bundle, ladder)
            report["quality"][name] = {"train": fit, **routing_quality(bundle, path, ladder)}
    print_report(report)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_targets(report: dict[str, Any]) -> None:
    """The decision rule's figures against issue 11's targets (held-out rows)."""
    print(
        "\n| data | rule @ default | gap closed: rule / threshold rule | largest shortfall vs "
        "random | default vs random, same cost | APGR calls / cost | cheaper tier as good |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for name, q in report["quality"].items():
        apgr = (
            f"{q['apgr_calls']:.3f} / {q['apgr_cost']:.3f}"
            if q.get("apgr_calls") is not None
            else "-"
        )
        print(
            f"| {name} | {q['default_label']} | {q['gap_closed']:.1%} / "
            f"{q['gap_closed_threshold_rule']:.1%} | {q['max_shortfall_vs_random']:.4f} | "
            f"{q['default_margin_vs_random']:+.4f} | {apgr} | "
            f"{', '.join(q['cheaper_tier_matching_default']) or 'none'} |"
        )


def print_report(report: dict[str, Any]) -> None:
    print(f"\nTraining the default bundle from data/queries ({report['machine']}):\n")
    print("| run | wall time (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for key, label in (
        ("default_cold", "cold cache (distils the static embedding)"),
        ("default_warm", "warm cache"),
    ):
        if key in report:
            r = report[key]
            print(f"| {label} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} |")
    if report.get("scale"):
        from train.bench.scale import print_scale

        print_scale(report["scale"])
    if not report["quality"]:
        print("\nRouting quality skipped (--skip-quality, or ../shared/data not found).")
        return
    print(
        "\nDefault recipe on ../shared/data (trained on the hash train split, scored on the "
        "held-out 20%):\n"
    )
    print(
        "| data | rows | AUC router | random | heuristic | oracle | gap closed | "
        "cost for 95% quality (share of top) | saving vs random at 95% | beats random | "
        "beats heuristic | train s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for name, q in report["quality"].items():
        print(
            f"| {name} | {q['rows']} | {q['auc_router']:.4f} | {q['auc_random']:.4f} | "
            f"{q['auc_heuristic']:.4f} | {q['auc_oracle']:.4f} | {q['gap_closed']:.1%} | "
            f"{q['cost_to_95_share_of_top']:.1%} | {q['saving_vs_random_95']:.1%} | "
            f"{'yes' if q['beats_random'] else 'no'} | "
            f"{'yes' if q['beats_heuristic'] else 'no'} | {q['train']['seconds']:.1f} |"
        )
    print_targets(report)
