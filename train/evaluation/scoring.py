"""Every figure of an evaluation, computed from running sums (no files, no models).

`score_tallies(outcomes, model)` returns the metrics part of report.json (see
docs/evaluation.md for the schema) from the sums `accumulate.py` adds up batch by batch;
`score(EvalInputs)` is the same on arrays held in memory (one batch). All curves follow
metrics.py's convention: the upper envelope of the operating points plus the always-cheapest
point, so router, heuristic, oracle and random mixing all start at the same cost and their
normalised AUCs compare fairly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from train.evaluation import metrics as m
from train.evaluation.accumulate import (
    CALIBRATION_BINS,
    KINDS,
    ModelTally,
    Outcomes,
    RuleCurve,
    clamp_pairs,
)
from train.evaluation.operating import point_summary
from train.evaluation.tally import PointSums, SweepSums, threshold_sweep_sums
from train.evaluation.verdict import verdict

__all__ = ["CALIBRATION_BINS", "EvalInputs", "RuleCurve", "score", "score_tallies"]

QUALITY_TARGETS = (0.90, 0.95, 1.00)  # shares of the always-top-tier quality
CPT_TARGETS = (0.5, 0.8)  # RouteLLM's CPT(50%) and CPT(80%)
MAX_EXACT_THRESHOLDS = 1000  # above this many distinct p values the sweep uses quantiles


@dataclass(frozen=True)
class EvalInputs:
    """One model's predictions next to the outcomes of the same rows."""

    tier_names: list[str]
    p_sufficient: np.ndarray  # [n, K] non-decreasing, last column 1.0
    quality: np.ndarray  # [n, K] 0..1, NaN unknown
    cost: np.ndarray  # [n, K] USD, finite
    sufficient: np.ndarray  # [n, K] 1 / 0 / NaN
    labels: np.ndarray  # [n] cheapest sufficient tier
    heuristic: np.ndarray  # [n] the rule-based baseline's tiers
    threshold: float  # the bundle's default operating point
    pass_mark: float
    groups: Sequence[str] = ()
    sources: Sequence[str] = ()
    # The served rule when it is not the threshold rule on `p_sufficient` (schema-2 bundles):
    # its settings from cheapest to best, the default, and how it decides.
    rule: RuleCurve | None = None


def thresholds_from(values: np.ndarray) -> np.ndarray:
    """Every distinct decision boundary `values` (exact), or quantiles of them when there are
    many, plus a fixed grid and both ends so the sweep reaches always-cheapest and always-top."""
    if values.size > MAX_EXACT_THRESHOLDS:
        values = np.quantile(values, np.linspace(0, 1, MAX_EXACT_THRESHOLDS))
    return np.unique(np.concatenate([values, np.linspace(0, 1, 101), [0.0, 1.0]]).clip(0, 1))


def sweep_thresholds(p_sufficient: np.ndarray) -> np.ndarray:
    """`thresholds_from` the distinct non-top p values of these rows."""
    return thresholds_from(np.unique(p_sufficient[:, :-1]))


def _points(envelope: Sequence[m.Point]) -> list[list[float]]:
    return [[p.cost, p.quality] for p in envelope]


def _threshold_sums(model: ModelTally, taus: np.ndarray, lo: int, hi: int) -> SweepSums:
    """The threshold rule clamped to [lo, hi] at every tau, from the stored chunks: one
    bucketed pass when p is monotone (always, for a bundle's output), else a pass per tau."""
    k = len(model.outcomes.tier_names)
    if model.monotone:
        return threshold_sweep_sums(model.chunks(), taus, lo, hi, k)
    sums = [PointSums(k) for _ in taus]
    for p_low, q, c in model.chunks():
        p = np.column_stack([p_low, np.ones(len(p_low))])
        for tau, s in zip(taus, sums, strict=True):
            s.add(np.clip(m.decide(p, float(tau)), lo, hi), q.astype(float), c)
    return SweepSums(
        np.array([s.cost[0] for s in sums]),
        np.array([s.q_sum[0] for s in sums]),
        np.array([s.known[0] for s in sums]),
        np.array([s.traffic[0] for s in sums]),
    )


def _router_sweep(model: ModelTally) -> tuple[list[dict[str, Any]], list[m.Point]]:
    """Operating points over every knob the served router has: its rule's setting (the
    threshold, or lambda through the quality knob), and the min_tier / max_tier clamps a
    gateway may set per request. For the threshold rule the unclamped sweep uses every
    boundary; clamped sweeps (min < max only: min == max is an always-tier baseline) use a
    coarser grid."""
    k = len(model.outcomes.tier_names)
    rule = model.rule
    if rule is None:
        full = thresholds_from(model.distinct_p())
        coarse = np.unique(
            np.concatenate([np.quantile(full, np.linspace(0, 1, 101)), np.linspace(0, 1, 101)])
        )
    rows, points = [], []
    for lo, hi in clamp_pairs(k):
        if rule is None:
            taus = full if (lo, hi) == (0, k - 1) else coarse
            sums = _threshold_sums(model, taus, lo, hi)
            settings = [(float(t), "threshold", None) for t in taus]
            found = [(sums.point(i), sums.share(i)) for i in range(len(taus))]
        else:
            qs = list(rule.qualities) or [None] * len(rule.settings)
            settings = [(float(v), rule.name, q) for v, q in zip(rule.settings, qs, strict=True)]
            found = [(s.point(), s.share()) for s in model.rule_sweep[(lo, hi)]]
        for (value, name, quality), (point, share) in zip(settings, found, strict=True):
            row = {"rule": name, "setting": value, "quality_setting": quality}
            if name == "threshold":
                row["threshold"] = value
            rows.append(
                {
                    **row,
                    "min_tier": lo,
                    "max_tier": hi,
                    "cost": point.cost,
                    "quality": point.quality,
                    "traffic_share": share.tolist(),
                }
            )
            points.append(point)
    return rows, points


def _anchored(points: Sequence[m.Point], cheapest: m.Point) -> list[m.Point]:
    """A curve with the always-cheapest point added (baselines.anchored_envelope's rule)."""
    return m.upper_envelope([*points, cheapest])


def _threshold_rule_envelope(model: ModelTally, cheapest: m.Point) -> list[m.Point]:
    """The threshold rule on the same bundle's p_sufficient, for comparison with its rule."""
    taus = thresholds_from(model.distinct_p())
    k = len(model.outcomes.tier_names)
    sums = _threshold_sums(model, taus, 0, k - 1)
    pts = [sums.point(i) for i in range(len(taus))]
    return _anchored(_finite_quality(pts), cheapest)


def _finite_quality(points: list[m.Point]) -> list[m.Point]:
    return [p for p in points if np.isfinite(p.quality)]


def _saving(router: float, random: float) -> tuple[float, float]:
    if not (np.isfinite(router) and np.isfinite(random)) or random <= 0:
        return float("nan"), float("nan")
    return random - router, (random - router) / random


def _targets(envs: dict[str, list[m.Point]], q_top: float, c_top: float) -> list[dict]:
    out = []
    for share in QUALITY_TARGETS:
        goal = share * q_top
        cost = {name: m.cost_at_quality(env, goal) for name, env in envs.items()}
        usd, rel = _saving(cost["router"], cost["random"])
        out.append(
            {
                "share_of_top_quality": share,
                "quality": goal,
                "cost": cost,
                "router_cost_share_of_top": cost["router"] / c_top if c_top else np.nan,
                "saving_vs_random_usd": usd,
                "saving_vs_random_share": rel,
            }
        )
    return out


def _two_tier(
    tier_names: list[str],
    sweep: list[dict],
    always: list[m.Point],
    heuristic: m.Point,
    oracle_point: m.Point,
    oracle_share: float,
    heuristic_share: float,
) -> dict[str, Any] | None:
    """RouteLLM's APGR and CPT(x%) on (share of calls to the strong tier, quality) curves."""
    if len(tier_names) != 2:
        return None
    qw, qs = always[0].quality, always[1].quality
    if not (np.isfinite(qw) and np.isfinite(qs)) or qw == qs:
        return {"note": "weak and strong tiers have equal quality: PGR is undefined"}
    ends = [[0.0, qw], [1.0, qs]]
    curves = {
        "router": ends
        + [
            [r["traffic_share"][1], r["quality"]]
            for r in sweep
            if np.isfinite(r["quality"]) and r["min_tier"] == 0 and r["max_tier"] == 1
        ],
        "random": ends,
        "heuristic": ends + [[heuristic_share, heuristic.quality]],
        "oracle": ends + [[oracle_share, oracle_point.quality]],
    }
    # The same curves with cost on the x-axis: (cost - always-weak) / (always-strong - weak).
    cw, cs = always[0].cost, always[1].cost

    def x(cost: float) -> float:
        return float(np.clip((cost - cw) / (cs - cw), 0.0, 1.0)) if cs > cw else float("nan")

    on_cost = {
        "router": ends
        + [
            [x(r["cost"]), r["quality"]]
            for r in sweep
            if np.isfinite(r["quality"]) and r["min_tier"] == 0 and r["max_tier"] == 1
        ],
        "random": ends,
        "heuristic": ends + [[x(heuristic.cost), heuristic.quality]],
        "oracle": ends + [[x(oracle_point.cost), oracle_point.quality]],
    }
    out: dict[str, Any] = {
        "q_weak": qw,
        "q_strong": qs,
        "apgr_cost_axis": "apgr_cost: the same area with x = (cost - always-weak cost) / "
        "(always-strong cost - always-weak cost) instead of the share of strong calls",
    }
    for name, curve in curves.items():
        out[name] = {"apgr": m.apgr(curve, qw, qs)}
        out[name]["apgr_cost"] = m.apgr(on_cost[name], qw, qs) if cs > cw else float("nan")
        for target in CPT_TARGETS:
            out[name][f"cpt_{round(target * 100)}"] = m.cpt(curve, target, qw, qs)
    return out


def _classification(model: ModelTally) -> dict[str, Any]:
    cm = model.confusion
    under, over = cm.under_over()
    return {
        "accuracy": cm.accuracy(),
        "macro_f1": cm.macro_f1(),
        "confusion": cm.counts.tolist(),
        "under_routing": under,
        "over_routing": over,
        "label_counts": cm.label_counts(),
    }


def _calibration(model: ModelTally) -> dict[str, Any]:
    out = {}
    rel = model.reliability
    for t, name in enumerate(model.outcomes.tier_names[:-1]):
        mid, pred, frac, count = rel.curve(t)
        out[name] = {
            "ece": rel.ece(t),
            "rows": int(count.sum()),
            "bins": {
                "mid": mid.tolist(),
                "mean_pred": pred.tolist(),
                "frac_pos": frac.tolist(),
                "count": count.tolist(),
            },
        }
    return out


def mean_ece(calibration: dict[str, Any]) -> float:
    """Row-weighted mean ECE over the non-top tiers (one number for comparisons)."""
    pairs = [(c["ece"], c["rows"]) for c in calibration.values() if np.isfinite(c["ece"])]
    total = sum(n for _, n in pairs)
    return float(sum(e * n for e, n in pairs) / total) if total else float("nan")


def _breakdown(kind: str, model: ModelTally) -> list[dict[str, Any]]:
    out_ = model.outcomes
    if not out_.has(kind):
        return []
    top = len(out_.tier_names) - 1
    router_by, always_by = model.default_by[kind], out_.always_by[kind]
    out = []
    for name, key in out_.codes[kind].sorted():
        rows = router_by.rows(key)
        router = router_by.point(key)
        env = _finite_quality([a.point(key) for a in always_by])
        out.append(
            {
                "name": name,
                "rows": rows,
                "router_quality": router.quality,
                "router_cost": router.cost,
                "random_quality_at_router_cost": (
                    m.quality_at_cost(m.upper_envelope(env), router.cost) if env else np.nan
                ),
                "heuristic_quality": out_.heuristic_by[kind].point(key).quality,
                "heuristic_cost": out_.heuristic_by[kind].point(key).cost,
                "oracle_quality": out_.oracle_by[kind].point(key).quality,
                "top_quality": always_by[top].point(key).quality,
                "top_cost": always_by[top].point(key).cost,
                "accuracy": float(model.correct_by[kind].counts[key] / rows),
                "traffic_share": router_by.share(key).tolist(),
            }
        )
    return out


def score(inp: EvalInputs) -> dict[str, Any]:
    """`score_tallies` on rows held in memory, added as one batch."""
    outcomes = Outcomes(inp.tier_names, inp.pass_mark)
    batch = outcomes.add(
        inp.quality,
        inp.cost,
        inp.heuristic,
        sufficient=np.asarray(inp.sufficient, dtype=float),
        labels=inp.labels,
        groups=inp.groups,
        sources=inp.sources,
    )
    model = ModelTally(outcomes, inp.threshold, inp.rule)
    model.add(batch, inp.p_sufficient, inp.rule.decide if inp.rule else None)
    return score_tallies(model)


def score_tallies(model: ModelTally) -> dict[str, Any]:
    """The metrics block of report.json: curves, AUCs, savings, classification, calibration,
    breakdowns. Values may be NaN (undefined) or inf (never reached); report.py maps both
    to null."""
    out_ = model.outcomes
    names = out_.tier_names
    always = [a.point() for a in out_.always]
    cheapest = always[0]
    sweep, all_points = _router_sweep(model)
    top_i = len(names) - 1
    router_points = [
        p
        for p, r in zip(all_points, sweep, strict=True)
        if (r["min_tier"], r["max_tier"]) == (0, top_i)
    ]
    oracle_point = out_.oracle.point()
    heur_point = out_.heuristic.point()
    envs = {
        "router": _anchored(_finite_quality(router_points), cheapest),
        **({"threshold_rule": _threshold_rule_envelope(model, cheapest)} if model.rule else {}),
        "router_clamps": _anchored(_finite_quality(all_points), cheapest),
        "random": m.upper_envelope(always),
        "heuristic": _anchored([heur_point], cheapest),
        "oracle": _anchored([oracle_point], cheapest),
    }
    c_min, c_max = always[0].cost, max(p.cost for p in always)
    auc_envs = {
        **envs,
        **{f"always:{n}": _anchored([always[t]], cheapest) for t, n in enumerate(names)},
    }
    auc = {
        name: (
            m.normalised_auc(env, c_min, c_max, always[0].quality)
            if c_max > c_min
            else float("nan")
        )
        for name, env in auc_envs.items()
    }
    q_top, c_top = always[-1].quality, always[-1].cost
    shortfall = _shortfall(envs["router"], envs["random"], c_min, c_max)
    default = point_summary(model.default.point(), always[-1], model.default.traffic[0], names)
    if model.rule is None:
        default = {"threshold": float(model.threshold), **default}
        default["rule"], default["label"] = "threshold", f"threshold {model.threshold:.3f}"
    else:
        default["threshold"] = model.threshold  # the bundle's calibrated threshold, for reference
        default["rule"], default["label"] = model.rule.name, model.rule.label
        default["setting"] = model.rule.default
    default["random_quality_at_same_cost"] = m.quality_at_cost(envs["random"], default["cost_usd"])
    default["heuristic_quality_at_same_cost"] = m.quality_at_cost(
        envs["heuristic"], default["cost_usd"]
    )
    heur_share = out_.heuristic.share()
    oracle_share = out_.oracle.share()
    calibration = _calibration(model)
    out = {
        "axis": {"c_min": c_min, "c_max": c_max, "top_quality": q_top, "top_cost": c_top},
        "always": [
            {"tier": n, "cost": p.cost, "quality": p.quality}
            for n, p in zip(names, always, strict=True)
        ],
        "router_sweep": sweep,
        "envelopes": {name: _points(env) for name, env in envs.items()},
        "auc": auc,
        "gap_closed": m.gap_closed(auc["router"], auc["random"], auc["oracle"]),
        "gap_closed_clamps": m.gap_closed(auc["router_clamps"], auc["random"], auc["oracle"]),
        **(
            {
                "gap_closed_threshold_rule": m.gap_closed(
                    auc["threshold_rule"], auc["random"], auc["oracle"]
                )
            }
            if model.rule
            else {}
        ),
        "targets": _targets(envs, q_top, c_top),
        "router_vs_random": shortfall,
        "at_tier_cost": [
            {
                "tier": n,
                "cost": p.cost,
                "tier_quality": p.quality,
                **{f"{name}_quality": m.quality_at_cost(env, p.cost) for name, env in envs.items()},
            }
            for n, p in zip(names, always, strict=True)
        ],
        "two_tier": _two_tier(
            names,
            sweep,
            always,
            heur_point,
            oracle_point,
            float(oracle_share[-1]),
            float(heur_share[-1]),
        ),
        "default": default,
        "baselines": {
            "heuristic": {
                "cost": heur_point.cost,
                "quality": heur_point.quality,
                "traffic_share": heur_share.tolist(),
                "router_quality_at_same_cost": m.quality_at_cost(envs["router"], heur_point.cost),
            },
            "oracle": {
                "cost": oracle_point.cost,
                "quality": oracle_point.quality,
                "traffic_share": oracle_share.tolist(),
            },
        },
        "classification": _classification(model),
        "calibration": calibration,
        "mean_ece": mean_ece(calibration),
        "breakdowns": {kind: _breakdown(kind, model) for kind in KINDS},
    }
    out["verdict"] = verdict(out)
    return out


def _shortfall(
    router: list[m.Point], random: list[m.Point], c_min: float, c_max: float
) -> dict[str, float]:
    """Where the router's curve lies furthest below random mixing (quality difference, at
    101 costs from always-cheapest to always-top): negative `min_difference` is a shortfall."""
    if not c_max > c_min:
        return {"min_difference": float("nan"), "at_cost_share": float("nan")}
    grid = np.linspace(c_min, c_max, 101)
    diff = np.array([m.quality_at_cost(router, c) - m.quality_at_cost(random, c) for c in grid])
    i = int(np.nanargmin(diff))
    return {"min_difference": float(diff[i]), "at_cost_share": float(grid[i] / c_max)}
