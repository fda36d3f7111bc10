"""The closed loop on real outcome data, end to end and reproducible.

RouterBench (3-tier default ladder) is cut by a fixed hash of `sample_id` into slice A (20%,
the base model's training data), B (50%, replayed as gateway traffic to produce escalation
logs) and C (30%, full outcomes, never used before evaluation). For each exploration rate the
base model's logs on B feed `retrain`; base, candidates and a full-label reference (trained on
A + B's complete outcomes: what perfect labels would buy) are then scored on C. The gate's
held-out log requests are also checked against their full outcomes in B: how often the
ladder-order inferences were right, and what the gate would have said with every outcome known.

    rung bench loop --shared ../shared/data --out reports/loop --salts 0 1 2
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.errors import RungError
from serve.model.ladder import default_ladder
from serve.model.runtime import Router
from train.data.load import load_dataset
from train.data.logset import load_logs, newest_mask
from train.data.types import fill_costs
from train.evaluation import metrics as m
from train.evaluation.gate import GateCriterion, figures, implied_outcomes
from train.fit.heads import head_auc
from train.fit.pipeline import TrainConfig, train_bundle
from train.loop.retrain import DEFAULT_HOLDOUT_SHARE, RetrainConfig, gate_models, retrain
from train.loop.simulate import SimConfig, simulate

SLICES = {"A": (0, 20), "B": (20, 70), "C": (70, 100)}


def slice_of(sample_id: str, salt: int) -> str:
    h = int(hashlib.sha256(f"loop-{salt}:{sample_id}".encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in SLICES.items() if lo <= h < hi)


def write_slices(source: Path, out: Path, salt: int) -> dict[str, list[str]]:
    """Copy each RouterBench CSV's rows into A/B/C files of the same layout (under reports/)."""
    files: dict[str, list[str]] = {name: [] for name in SLICES}
    for src in sorted(source.glob("*.csv")):
        with open(src, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header, rows = list(reader.fieldnames or []), list(reader)
        for name in SLICES:
            dest = out / name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, header)
                writer.writeheader()
                writer.writerows(r for r in rows if slice_of(r["sample_id"], salt) == name)
            files[name].append(str(dest))
    return files


def _p(router: Router, texts: list[str]) -> np.ndarray:
    return np.concatenate(
        [router.p_sufficient(texts[i : i + 512]) for i in range(0, len(texts), 512)]
    )


def score_on(
    router: Router,
    texts: list[str],
    quality: np.ndarray,
    cost: np.ndarray,
) -> dict[str, Any]:
    """Figures on full-outcome rows: default threshold, cost at 95% of top, AUC, gap closed."""
    p = _p(router, texts)
    f = figures(p, quality, cost, router.manifest.threshold)
    always = m.always_tier_points(quality, cost)
    c_min, c_max = always[0].cost, always[-1].cost
    sweep = m.threshold_sweep(p, quality, cost, np.linspace(0, 1, 201))
    env = m.upper_envelope(sweep + always)
    random_env = m.upper_envelope(always)
    oracle_env = m.upper_envelope(
        always + [m.operating_point(m.oracle_decisions(quality), quality, cost)]
    )
    aucs = [m.normalised_auc(e, c_min, c_max) for e in (env, random_env, oracle_env)]
    suff = (quality >= 0.5).astype(float)
    return {
        "threshold": router.manifest.threshold,
        "quality_at_threshold": f.quality_at_threshold,
        "cost_at_threshold": f.cost_at_threshold,
        "cost_share_at_threshold": f.cost_at_threshold / f.top_cost,
        "quality_share_at_threshold": f.quality_at_threshold / f.top_quality,
        "cost_at_95": f.cost_at_target,
        "cost_share_at_95": f.cost_share_of_top,
        "ece": f.ece,
        "auc": aucs[0],
        "gap_closed": m.gap_closed(*aucs),
        "head_auc": head_auc(p, suff),
        "envelope": [[pt.cost, pt.quality] for pt in env],
        "random_auc": aucs[1],
        "oracle_auc": aucs[2],
        "top_cost": f.top_cost,
        "top_quality": f.top_quality,
    }


def gate_check(outcomes: list[str], log_path: Path, base: Path, candidate: Path) -> dict[str, Any]:
    """The gate's held-out requests checked against their full outcomes in the replayed data:
    how often the ladder-order inferences were right, and the verdict with every outcome known.
    """
    ladder = default_ladder()
    logs = load_logs([log_path], ladder)
    held_mask = newest_mask(logs.dataset.times, DEFAULT_HOLDOUT_SHARE)
    held = logs.dataset.subset(held_mask)
    requests = [r for r, h in zip(logs.requests, held_mask, strict=True) if h]
    truth_ds = load_dataset(outcomes, ladder, apply_policy=False)
    index = {rid: i for i, rid in enumerate(truth_ds.ids)}
    truth = truth_ds.quality[[index[rid] for rid in held.ids]]
    true_ok = truth >= ladder.pass_mark
    label = held.quality
    tried = np.zeros(label.shape, bool)
    for i, req in enumerate(requests):
        tried[i, [a.tier for a in req.attempts]] = True
    implied = np.isnan(label) & ~np.isnan(implied_outcomes(label, ladder.pass_mark))
    up = ~np.isnan(label) & ~tried  # filled by the success rule (every tier above a success)
    full = dataclasses.replace(held, quality=truth)
    _, _, decision = gate_models(Router.load(candidate), Router.load(base), full, GateCriterion())
    return {
        "implied_failures": int(implied.sum()),
        "implied_failures_true": int((implied & ~true_ok).sum()),
        "success_rule_cells": int(up.sum()),
        "success_rule_true": int((up & true_ok).sum()),
        "true_outcome_verdict": decision.verdict.value,
        "true_outcome_reason": decision.reason,
    }


def run_once(shared: Path, out: Path, salt: int, explore: list[float]) -> dict[str, Any]:
    ladder = default_ladder()
    quiet = lambda *_: None  # noqa: E731
    files = write_slices(shared / "routerbench", out / "slices", salt)
    models = out / "models"
    base = train_bundle(
        TrainConfig(
            data=files["A"],
            out=models / "base",
            ladder=ladder,
            holdout=False,
            progress=False,
            overwrite=True,
        ),
        log=quiet,
    )
    eval_ds = load_dataset(files["C"], ladder)
    complete = ~np.isnan(eval_ds.quality).any(axis=1)
    eval_ds = eval_ds.subset(complete)
    base_router = Router.load(base.bundle)
    counts = base_router.embedder.embed(eval_ds.texts)[1]
    cost = fill_costs(eval_ds, counts)
    results: dict[str, Any] = {
        "salt": salt,
        "rows": {k: len(load_dataset(v, ladder)) for k, v in files.items()},
        "eval_rows": len(eval_ds),
        "models": {},
        "logs": {},
    }
    results["models"]["base (A)"] = score_on(base_router, eval_ds.texts, eval_ds.quality, cost)
    for rate in explore:
        tag = f"explore {rate:g}"
        log_path = out / "logs" / f"explore_{rate:g}.jsonl"
        sim = simulate(SimConfig(files["B"], base.bundle, log_path, explore=rate, seed=salt))
        res = retrain(
            RetrainConfig(
                models / "base",
                [str(log_path)],
                models / f"retrain_explore_{rate:g}",
                seed=0,
                overwrite=True,
            ),
            log=quiet,
        )
        results["logs"][tag] = {
            "requests": sim.requests,
            "explore_requests": sim.explore,
            "attempts": sim.attempts,
            "escalations": sim.escalations,
            "gateway_cost_usd": sim.cost_usd,
            "solved": sim.solved,
            "first_tier": dict(sim.routed),
            "per_tier": res.logs.to_dict()["per_tier"],
            "informative_requests": res.logs.informative,
            "gate": {
                "verdict": res.decision.verdict.value,
                "reason": res.decision.reason,
                "observed_complete_heldout_rows": res.candidate_figures.observed_rows,
                "complete_heldout_rows": res.candidate_figures.rows,
                "heldout_requests": res.holdout_rows,
                "complete_by_cheapest_tier": list(res.candidate_figures.cheapest_sufficient),
                "candidate_cost_share": res.candidate_figures.cost_share_of_top,
                "base_cost_share": res.base_figures.cost_share_of_top,
                **gate_check(files["B"], log_path, base.bundle, res.bundle),
            },
        }
        router = Router.load(res.bundle)
        results["models"][f"retrained, {tag}"] = score_on(
            router, eval_ds.texts, eval_ds.quality, cost
        )
    full = train_bundle(
        TrainConfig(
            data=files["A"] + files["B"],
            out=models / "full_labels",
            ladder=ladder,
            holdout=False,
            progress=False,
            overwrite=True,
        ),
        log=quiet,
    )
    results["models"]["full labels (A+B)"] = score_on(
        Router.load(full.bundle), eval_ds.texts, eval_ds.quality, cost
    )
    always = m.always_tier_points(eval_ds.quality, cost)
    results["always_tier"] = [[p.cost, p.quality] for p in always]
    oracle = m.operating_point(m.oracle_decisions(eval_ds.quality), eval_ds.quality, cost)
    results["oracle"] = [oracle.cost, oracle.quality]
    return results


# ---------------------------------------------------------------- report


def _row(name: str, r: dict[str, Any]) -> str:
    heads = " / ".join(f"{a:.3f}" for a in r["head_auc"])
    return (
        f"| {name} | {r['quality_at_threshold']:.3f} | {r['cost_share_at_threshold']:.1%} | "
        f"{r['cost_share_at_95']:.1%} | {r['auc']:.4f} | {r['gap_closed']:.3f} | "
        f"{r['ece']:.3f} | {heads} |"
    )


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = []
    for res in runs:
        lines += [
            f"### salt {res['salt']}: slices {res['rows']}, {res['eval_rows']} complete rows in C",
            "",
            "| model | quality @ threshold | cost @ threshold (of top) | cost @ 95% top "
            "quality (of top) | AUC | gap closed | ECE | head AUC small / medium |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [_row(name, r) for name, r in res["models"].items()]
        lines += [
            "",
            "| logs | requests | explore | escalations | solved | gateway cost | small known "
            "| medium known | held-out complete: observed -> implied (of held out) | gate "
            "| implied failures true | gate on true outcomes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for tag, lg in res["logs"].items():
            pt, g = lg["per_tier"], lg["gate"]
            lines.append(
                f"| {tag} | {lg['requests']} | {lg['explore_requests']} | "
                f"{lg['escalations']} | {lg['solved']} | ${lg['gateway_cost_usd']:.3f} | "
                f"{pt['small']['known']} | {pt['medium']['known']} | "
                f"{g['observed_complete_heldout_rows']} -> {g['complete_heldout_rows']} "
                f"({g['heldout_requests']}) | {g['verdict']} | "
                f"{g['implied_failures_true']} of {g['implied_failures']} | "
                f"{g['true_outcome_verdict']} |"
            )
        lines.append("")
        for tag, lg in res["logs"].items():
            g = lg["gate"]
            mix = " / ".join(map(str, g["complete_by_cheapest_tier"]))
            lines.append(
                f"- {tag}: complete held-out requests by cheapest sufficient tier (small / "
                f"medium / large / none): {mix}. "
                f"Gate {g['verdict']}: {g['reason']}. With every outcome known: "
                f"{g['true_outcome_verdict']}: {g['true_outcome_reason']}. Success-rule "
                f"inferences true: {g['success_rule_true']} of {g['success_rule_cells']}."
            )
        lines.append("")
    if len(runs) > 1:
        lines += spread(runs)
    return "\n".join(lines)


def spread(runs: list[dict[str, Any]]) -> list[str]:
    """Mean and range over salts of each model's change against the base model."""
    lines = [
        f"### change against the base model, over {len(runs)} slicings (mean [min, max])",
        "",
        "| model | cost @ 95% top quality, points of top cost | AUC | gap closed |",
        "|---|---|---|---|",
    ]
    for name in runs[0]["models"]:
        if name.startswith("base"):
            continue
        cells = []
        for key, scale, fmt in (
            ("cost_share_at_95", 100, "+.1f"),
            ("auc", 1, "+.4f"),
            ("gap_closed", 1, "+.3f"),
        ):
            d = [
                scale * (r["models"][name][key] - next(iter(r["models"].values()))[key])
                for r in runs
            ]
            cells.append(f"{np.mean(d):{fmt}} [{min(d):{fmt}}, {max(d):{fmt}}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = res["always_tier"][-1][0]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [c / top for c, _ in res["always_tier"]]
    ax.plot(
        xs,
        [q for _, q in res["always_tier"]],
        "s--",
        color="gray",
        lw=1,
        label="fixed tiers (random mixing)",
    )
    ax.plot(
        [res["oracle"][0] / top], [res["oracle"][1]], "*", color="tab:green", ms=10, label="oracle"
    )
    for name, r in res["models"].items():
        env = np.array(r["envelope"])
        (line,) = ax.plot(env[:, 0] / top, env[:, 1], lw=1.6, label=name)
        ax.plot(
            [r["cost_share_at_threshold"]], [r["quality_at_threshold"]], "o", color=line.get_color()
        )
    ax.axhline(0.95 * res["always_tier"][-1][1], color="black", lw=0.6, ls=":")
    ax.set_xlabel("cost, share of always-top-tier cost")
    ax.set_ylabel("quality (mean correctness)")
    ax.set_title(
        f"RouterBench slice C ({res['eval_rows']} prompts): before and after retraining",
        fontsize=10,
    )
    fig.text(
        0.01,
        -0.02,
        "curves: each model's threshold sweep mixed with the fixed tiers (upper envelope); "
        "dots: its calibrated threshold;\ndotted line: 95% of always-top quality",
        fontsize=7,
        va="top",
    )
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def run(args: Any) -> int:
    """`rung bench loop`: args carry shared, out, explore, salts and plot."""
    if not (args.shared / "routerbench").is_dir():
        raise RungError(f"no RouterBench data under {args.shared}; pass --shared")
    runs = []
    for salt in args.salts:
        res = run_once(args.shared, args.out / f"salt_{salt}", salt, args.explore)
        runs.append(res)
        (args.out / "results.json").write_text(json.dumps(runs, indent=1))
        print(markdown([res]), flush=True)
    (args.out / "results.md").write_text(markdown(runs))
    plot(runs[0], args.plot or args.out / "loop.png")
    return 0
