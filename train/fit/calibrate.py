"""Calibrating a decision rule on held-out predictions: the sweep of its setting, the
`quality` knob's table, and the default setting for the bundle's quality target.

Both rules are swept the same way: every setting gives an operating point (mean quality,
total cost) on out-of-fold predictions, scored with the rows' true outcomes and costs. The
table answers, for each quality share q on a grid, "the cheapest setting whose held-out quality
reached q x always-top quality"; cost falls monotonically with lambda (and rises with the
threshold) per row, so the cheapest such setting is also the largest lambda (smallest
threshold) and the table is monotone by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve.model.policy import KnobPoint, Policy, Rule
from train.evaluation.metrics import (
    Point,
    always_tier_points,
    normalised_auc,
    operating_point,
    upper_envelope,
)
from train.evaluation.operating import candidate_thresholds

LAMBDA_POINTS = 400  # breakpoints kept (quantiles) when the data has more
TABLE_STEP = 0.005  # quality-share grid of the calibration table


@dataclass(frozen=True)
class Sweep:
    """Operating points of one rule over its settings, ordered from cheapest to best."""

    rule: Rule
    values: np.ndarray  # settings, cheapest first (lambda descending, threshold ascending)
    quality: np.ndarray  # mean quality per setting
    cost: np.ndarray  # total cost per setting
    top_quality: float
    top_cost: float
    always: tuple[Point, ...]  # always-tier-t points on the same rows

    @property
    def quality_share(self) -> np.ndarray:
        return self.quality / self.top_quality

    @property
    def cost_share(self) -> np.ndarray:
        return self.cost / self.top_cost


def lambda_grid(p_correct: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Every lambda where some row's choice can change (pairwise breakpoints, thinned to
    quantiles on large data), plus 0 and one above the largest: descending."""
    k = p_correct.shape[1]
    breaks = []
    for i in range(k):
        for j in range(i + 1, k):
            dp, dc = p_correct[:, j] - p_correct[:, i], cost[:, j] - cost[:, i]
            with np.errstate(divide="ignore", invalid="ignore"):
                lam = dp / dc
            breaks.append(lam[np.isfinite(lam) & (lam > 0)])
    values = np.concatenate(breaks) if breaks else np.zeros(0)
    if values.size > LAMBDA_POINTS:
        values = np.quantile(values, np.linspace(0, 1, LAMBDA_POINTS))
    top = values.max() * 2 if values.size else 1.0
    # Midpoints between breakpoints sit inside each constant stretch of decisions.
    values = np.unique(np.concatenate([values, [0.0, top]]))
    mids = (values[1:] + values[:-1]) / 2
    return np.unique(np.concatenate([values, mids]))[::-1]


def sweep(
    rule: Rule,
    p: np.ndarray,
    cost_est: np.ndarray,
    quality: np.ndarray,
    cost_true: np.ndarray,
) -> Sweep:
    """Operating points over the rule's settings. `p` is p_correct (utility) or p_sufficient
    (threshold); decisions use estimated costs, scoring the true ones."""
    if rule is Rule.UTILITY:
        values = lambda_grid(p, cost_est)
        block = lambda v: _utility_block(p, cost_est, v)  # noqa: E731
    else:
        values = np.sort(candidate_thresholds(p))
        block = lambda v: _threshold_block(p, v)  # noqa: E731
    qs, cs = _sweep_points(block, values, quality, cost_true)
    always = tuple(always_tier_points(quality, cost_true))
    top = always[-1]
    return Sweep(rule, values, qs, cs, top.quality, top.cost, always)


# Settings are decided in blocks of [settings, rows, tiers] arrays of about this many cells:
# one `operating_point` call per setting was 1 s per sweep on 10k rows (5 sweeps per training).
_BLOCK_CELLS = 1 << 21


def _sweep_points(
    block: Callable[[np.ndarray], np.ndarray],
    values: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(mean quality, total cost) per setting, as `operating_point` scores one setting."""
    operating_point(np.zeros(len(quality), np.int64), quality, cost)  # validates the tables
    n, k = quality.shape
    q_flat, c_flat = quality.ravel(), cost.ravel()
    offsets = np.arange(n) * k
    step = max(1, _BLOCK_CELLS // max(n * k, 1))
    qs, cs = np.empty(len(values)), np.empty(len(values))
    for start in range(0, len(values), step):
        idx = block(values[start : start + step]) + offsets  # [settings, rows]
        routed_c, routed_q = c_flat[idx], q_flat[idx]
        if not np.all(np.isfinite(routed_c)):
            raise ValueError("cost of a routed tier is not finite")
        known = ~np.isnan(routed_q)
        count = known.sum(axis=1)
        total = np.where(known, routed_q, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            qs[start : start + step] = np.where(count > 0, total / count, np.nan)
        cs[start : start + step] = routed_c.sum(axis=1)
    return qs, cs


def _utility_block(p: np.ndarray, cost: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """`decide_utility(p, cost, lam)` for each lam of `lams`: [settings, rows]."""
    u = p.astype(np.float64)[None] - lams[:, None, None] * cost[None]
    tied = u >= u.max(axis=2, keepdims=True) - 1e-12
    return np.where(tied, cost[None], np.inf).argmin(axis=2)


def _threshold_block(p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """`decide_threshold(p, t)` for each t of `thresholds`: [settings, rows]."""
    ok = p[None] >= thresholds[:, None, None]
    ok[:, :, -1] = True
    return ok.argmax(axis=2)


def knob_table(s: Sweep) -> tuple[KnobPoint, ...]:
    """For each quality share on the grid, the cheapest setting reaching it held-out."""
    share = s.quality_share
    ok = np.isfinite(share)
    lo = np.floor(share[ok].min() / TABLE_STEP) * TABLE_STEP
    hi = share[ok].max()
    grid = np.unique(np.round(np.append(np.arange(max(lo, TABLE_STEP), hi, TABLE_STEP), hi), 6))
    # Cheapest first; among equal costs the setting nearest the cheap end (larger lambda,
    # smaller threshold), which `values` order already gives.
    order = np.lexsort((np.arange(len(s.values)), s.cost))
    points: list[KnobPoint] = []
    for q in grid:
        feasible = order[share[order] >= q - 1e-9]
        if not feasible.size:
            continue
        i = int(feasible[0])
        points.append(
            KnobPoint(float(q), float(s.values[i]), float(share[i]), float(s.cost_share[i]))
        )
    # Float noise in summed costs must not break monotonicity of the table.
    fixed: list[KnobPoint] = []
    for p in points:
        if fixed:
            prev = fixed[-1].value
            v = min(p.value, prev) if s.rule is Rule.UTILITY else max(p.value, prev)
            p = KnobPoint(p.quality, v, p.achieved, p.cost_share)
        fixed.append(p)
    return tuple(fixed)


def calibrate(s: Sweep, quality_share: float) -> Policy:
    table = knob_table(s)
    policy = Policy(s.rule, quality_share, table[-1].value, table)
    return Policy(s.rule, quality_share, policy.setting_for(quality_share), table)


def curve_area(s: Sweep) -> float:
    """Normalised area under the rule's held-out quality-vs-cost envelope (with the
    always-cheapest anchor, train.evaluation.metrics conventions), for comparing rules and
    head families on the same rows."""
    pts = [Point(c, q) for c, q in zip(s.cost, s.quality, strict=True) if np.isfinite(q)]
    c_min, c_max = s.always[0].cost, max(p.cost for p in s.always)
    if not c_max > c_min:
        return float("nan")
    env = upper_envelope([*pts, s.always[0]])
    return normalised_auc(env, c_min, c_max, s.always[0].quality)


def summary(s: Sweep, policy: Policy) -> dict[str, Any]:
    """The figures behind the default setting, for the manifest."""
    i = int(np.argmin(np.abs(s.values - policy.value)))
    return {
        "rule": s.rule.value,
        "value": policy.value,
        "quality_share_of_top": float(s.quality_share[i]),
        "cost_share_of_top": float(s.cost_share[i]),
        "settings_swept": int(len(s.values)),
    }
