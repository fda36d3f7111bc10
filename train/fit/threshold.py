"""Choosing the default threshold on held-out predictions, and the figures behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from train.evaluation.metrics import decide, operating_point
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
    best: tuple[float, float] | None = None  # (cost, -threshold)
    for tau in candidate_thresholds(p_sufficient):
        point = operating_point(decide(p_sufficient, tau), quality, cost)
        if point.quality + 1e-12 >= goal:
            key = (point.cost, -float(tau))
            if best is None or key < best:
                best = key
    return 1.0 if best is None else -best[1]
