"""One operating point of the threshold rule: what it routes where, at what quality and cost.

Shared by training (the calibrated default), evaluation and the promotion gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from train.evaluation.metrics import Point, decide, operating_point


def candidate_thresholds(p_sufficient: np.ndarray) -> np.ndarray:
    """Every distinct decision boundary in the data, plus a fine grid for stability."""
    values = np.unique(np.concatenate([p_sufficient[:, :-1].ravel(), np.linspace(0, 1, 201)]))
    return values[(values >= 0) & (values <= 1)]


def operating_summary(
    p_sufficient: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    threshold: float,
    names: list[str],
) -> dict[str, Any]:
    """Quality, cost and traffic share at one threshold, next to always-top."""
    summary = decisions_summary(decide(p_sufficient, threshold), quality, cost, names)
    return {"threshold": float(threshold), **summary}


def decisions_summary(
    decisions: np.ndarray, quality: np.ndarray, cost: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """Quality, cost and traffic share of decisions of any rule, next to always-top."""
    point = operating_point(decisions, quality, cost)
    top = operating_point(np.full(len(decisions), len(names) - 1), quality, cost)
    return point_summary(point, top, np.bincount(decisions, minlength=len(names)), names)


def point_summary(
    point: Point, top: Point, traffic: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """`decisions_summary` from an operating point, always-top's and rows per tier."""
    rows = int(np.sum(traffic))
    share = np.asarray(traffic) / max(rows, 1)
    return {
        "rows": rows,
        "quality": point.quality,
        "cost_usd": point.cost,
        "top_tier_quality": top.quality,
        "top_tier_cost_usd": top.cost,
        "quality_share_of_top": point.quality / top.quality if top.quality else float("nan"),
        "cost_share_of_top": point.cost / top.cost if top.cost else float("nan"),
        "traffic_share": {n: float(x) for n, x in zip(names, share, strict=True)},
    }
