"""Choosing the default threshold on held-out predictions, and the figures behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from train.evaluation.metrics import decide, operating_point

DEFAULT_QUALITY_SHARE = 0.95


@dataclass(frozen=True)
class ThresholdTarget:
    """Keep `quality_share` of the always-top-tier quality at the least cost."""

    quality_share: float = DEFAULT_QUALITY_SHARE

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "quality_share_of_top_tier",
            "quality_share": self.quality_share,
            "rule": "lowest-cost threshold whose held-out quality >= quality_share x "
            "always-top quality; ties go to the higher threshold",
        }


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
    decisions = decide(p_sufficient, threshold)
    point = operating_point(decisions, quality, cost)
    top = operating_point(np.full(len(decisions), len(names) - 1), quality, cost)
    share = np.bincount(decisions, minlength=len(names)) / max(len(decisions), 1)
    return {
        "threshold": float(threshold),
        "rows": int(len(decisions)),
        "quality": point.quality,
        "cost_usd": point.cost,
        "top_tier_quality": top.quality,
        "top_tier_cost_usd": top.cost,
        "quality_share_of_top": point.quality / top.quality if top.quality else float("nan"),
        "cost_share_of_top": point.cost / top.cost if top.cost else float("nan"),
        "traffic_share": {n: float(s) for n, s in zip(names, share, strict=True)},
    }


def calibrate_threshold(
    p_sufficient: np.ndarray, quality: np.ndarray, cost: np.ndarray, target: ThresholdTarget
) -> float:
    """Cheapest threshold meeting the target; 1.0 (always top) if nothing cheaper does."""
    n_tiers = p_sufficient.shape[1]
    top_quality = operating_point(np.full(len(p_sufficient), n_tiers - 1), quality, cost).quality
    goal = target.quality_share * top_quality
    best: tuple[float, float] | None = None  # (cost, -threshold)
    for tau in candidate_thresholds(p_sufficient):
        point = operating_point(decide(p_sufficient, tau), quality, cost)
        if point.quality + 1e-12 >= goal:
            key = (point.cost, -float(tau))
            if best is None or key < best:
                best = key
    return 1.0 if best is None else -best[1]
