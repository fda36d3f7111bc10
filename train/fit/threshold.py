"""Choosing the default threshold on held-out predictions, and the figures behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from train.evaluation.metrics import operating_point, threshold_sweep
from train.evaluation.operating import candidate_thresholds

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


def calibrate_threshold(
    p_sufficient: np.ndarray, quality: np.ndarray, cost: np.ndarray, target: ThresholdTarget
) -> float:
    """Cheapest threshold meeting the target; 1.0 (always top) if nothing cheaper does."""
    n_tiers = p_sufficient.shape[1]
    top_quality = operating_point(np.full(len(p_sufficient), n_tiers - 1), quality, cost).quality
    goal = target.quality_share * top_quality
    taus = candidate_thresholds(p_sufficient)
    points = threshold_sweep(p_sufficient, quality, cost, taus)
    cost_at = np.array([pt.cost for pt in points])
    meets = np.array([pt.quality + 1e-12 >= goal for pt in points])
    if not meets.any():
        return 1.0
    cheapest = cost_at[meets].min()
    # ties go to the higher threshold: it buys the same cost with more headroom
    return float(taus[meets & (cost_at == cheapest)].max())
