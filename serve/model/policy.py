"""How a bundle turns its estimates into a tier: the decision rules, the per-request `quality`
knob and the per-request cost estimate. Pure numpy / Python, shared by serving and training.

Two rules:
- THRESHOLD: the cheapest tier whose `p_sufficient` reaches a threshold (every bundle built
  before schema 2 decides this way).
- UTILITY: tier = argmax_t [P_t(x) - lambda * c_t(x)], where P_t is the estimated probability
  that tier t answers well and c_t the estimated USD cost of the request on tier t. Ties go to
  the cheaper estimate, then the lower tier. Lowering lambda never lowers a row's chosen cost
  (for lambda1 > lambda2 with choices a and b, the two optimality inequalities add up to
  (lambda1 - lambda2) * (c_b - c_a) >= 0), which is what makes one knob trustworthy.

The knob a person sets is `quality` in (0, 1]: "the operating point that kept this share of
the top tier's quality on held-out data". The bundle's calibration table maps it to lambda (or
to a threshold): the cheapest calibrated setting whose held-out quality share reached it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from serve.model.errors import RungError
from serve.model.ladder import Ladder


class PolicyError(RungError):
    """A decision policy or cost model in a manifest that cannot be used."""


class Rule(str, Enum):
    THRESHOLD = "threshold"
    UTILITY = "utility"


@dataclass(frozen=True)
class KnobPoint:
    """One row of the calibration table: the setting that kept `quality` share of top quality."""

    quality: float  # the knob value this row answers (share of top-tier quality)
    value: float  # lambda (utility) or threshold, the cheapest setting reaching it held-out
    achieved: float  # held-out quality share that setting reached (>= quality when reachable)
    cost_share: float  # held-out cost as a share of always-top


@dataclass(frozen=True)
class Policy:
    """A rule, its default setting, and the table behind the `quality` knob."""

    rule: Rule
    default_quality: float
    value: float  # the default lambda or threshold
    table: tuple[KnobPoint, ...]  # ascending in quality

    def __post_init__(self) -> None:
        if not self.table:
            raise PolicyError("the calibration table is empty")
        qs = [p.quality for p in self.table]
        if any(b <= a for a, b in zip(qs, qs[1:], strict=False)):
            raise PolicyError("the calibration table must be strictly ascending in quality")
        vals = [p.value for p in self.table]
        pairs = zip(vals, vals[1:], strict=False)
        # Utility: more quality, lower lambda. Threshold: more quality, higher threshold.
        if self.rule is Rule.UTILITY and any(b > a for a, b in pairs):
            raise PolicyError("lambda must not increase along the calibration table")
        if self.rule is Rule.THRESHOLD and any(b < a for a, b in pairs):
            raise PolicyError("threshold must not decrease along the calibration table")
        for v in vals:
            if not math.isfinite(v) or v < 0 or (self.rule is Rule.THRESHOLD and v > 1):
                raise PolicyError(f"calibration table value {v} out of range for {self.rule}")

    def setting_for(self, quality: float) -> float:
        """The cheapest calibrated setting that kept at least `quality` of top-tier quality;
        past the table's end, its highest-quality setting."""
        if not 0.0 < quality <= 1.0:
            raise PolicyError(f"quality must lie in (0, 1], got {quality}")
        for point in self.table:
            if point.quality >= quality - 1e-12:
                return point.value
        return self.table[-1].value

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "default_quality": self.default_quality,
            "value": self.value,
            "table": [[p.quality, p.value, p.achieved, p.cost_share] for p in self.table],
            "table_columns": ["quality", "value", "achieved_quality_share", "cost_share_of_top"],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Policy:
        try:
            table = tuple(KnobPoint(*(float(x) for x in row)) for row in raw["table"])
            return cls(
                rule=Rule(raw["rule"]),
                default_quality=float(raw["default_quality"]),
                value=float(raw["value"]),
                table=table,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"decision policy is incomplete or malformed: {exc!r}") from None


@dataclass(frozen=True)
class CostModel:
    """c_t(x) = (input_tokens(x) * input_price_t + output_tokens_t(x) * output_price_t) / 1e6.

    `learned[t]`: tier t's answer length comes from the classifier graph's second output
    (predicted per request from the training data's recorded costs); else it is the ladder's
    `output_tokens`. Input tokens are the tokenizer's content tokens; past the token cap the
    tokenizer stops counting, so the count is extended by characters / `chars_per_token` (the
    training data's ratio): an approximation that costs nothing at serve time.
    """

    input_price: tuple[float, ...]  # USD per 1M tokens
    output_price: tuple[float, ...]
    output_tokens: tuple[float, ...]  # the fallback answer length per tier
    learned: tuple[bool, ...]
    chars_per_token: float = 4.0
    token_cap: int = 512

    @classmethod
    def from_ladder(
        cls, ladder: Ladder, token_cap: int, raw: dict[str, Any] | None = None
    ) -> CostModel:
        raw = raw or {}
        k = len(ladder)
        learned = tuple(bool(x) for x in raw.get("learned", [False] * k))
        if len(learned) != k:
            raise PolicyError(f"cost model has {len(learned)} tiers, the ladder {k}")
        cpt = float(raw.get("chars_per_token", 4.0))
        if not math.isfinite(cpt) or cpt <= 0:
            raise PolicyError(f"chars_per_token must be > 0, got {cpt}")
        return cls(
            input_price=tuple(t.input_price for t in ladder.tiers),
            output_price=tuple(t.output_price for t in ladder.tiers),
            output_tokens=tuple(float(t.output_tokens) for t in ladder.tiers),
            learned=learned,
            chars_per_token=cpt,
            token_cap=token_cap,
        )

    @property
    def any_learned(self) -> bool:
        return any(self.learned)

    def input_tokens(self, counted: float, chars: int) -> float:
        if counted < self.token_cap:
            return float(counted)
        return max(float(counted), chars / self.chars_per_token)

    def costs(self, input_tokens: np.ndarray, out_tokens: np.ndarray | None) -> np.ndarray:
        """[n, K] USD from [n] input tokens and [n, K] predicted answer lengths (or None)."""
        n_in = np.asarray(input_tokens, dtype=np.float64)[:, None]
        fixed = np.asarray(self.output_tokens)[None, :]
        if out_tokens is None:
            out = np.broadcast_to(fixed, (n_in.shape[0], len(self.learned)))
        else:
            out = np.where(np.asarray(self.learned)[None, :], out_tokens, fixed)
        return (n_in * np.asarray(self.input_price) + out * np.asarray(self.output_price)) / 1e6

    def costs_one(self, input_tokens: float, out_tokens: Sequence[float] | None) -> list[float]:
        """`costs` for one request, in plain Python (the hot path: three tiers, no arrays)."""
        out = []
        for t, learned in enumerate(self.learned):
            o = out_tokens[t] if learned and out_tokens is not None else self.output_tokens[t]
            out.append((input_tokens * self.input_price[t] + o * self.output_price[t]) / 1e6)
        return out


def tokens_from_log(log_tokens: np.ndarray) -> np.ndarray:
    """The graph predicts log1p(answer tokens); clip to [0, 100k] tokens before exp."""
    return np.expm1(np.clip(np.asarray(log_tokens, dtype=np.float64), 0.0, math.log1p(1e5)))


def decide_threshold(
    p_sufficient: np.ndarray, threshold: float | np.ndarray, lo: Any = 0, hi: Any = None
) -> np.ndarray:
    """Cheapest tier whose p_sufficient reaches the threshold, clamped to [lo, hi]."""
    top = p_sufficient.shape[1] - 1
    ok = p_sufficient >= threshold
    ok[:, top] = True
    return np.clip(ok.argmax(axis=1), lo, top if hi is None else hi)


def decide_utility(
    p_correct: np.ndarray, cost: np.ndarray, lam: float | np.ndarray, lo: Any = 0, hi: Any = None
) -> np.ndarray:
    """argmax_t P_t - lam * c_t over tiers in [lo, hi] (per row, or scalars); ties go to the
    cheaper cost estimate, then the lower tier."""
    n, k = p_correct.shape
    lam = np.asarray(lam, dtype=np.float64).reshape(-1, 1) if np.ndim(lam) else float(lam)
    u = p_correct.astype(np.float64) - lam * cost
    tiers = np.arange(k)[None, :]
    lo_a = np.asarray(lo).reshape(-1, 1)
    hi_a = np.asarray(k - 1 if hi is None else hi).reshape(-1, 1)
    u = np.where((tiers >= lo_a) & (tiers <= hi_a), u, -np.inf)
    best = u.max(axis=1, keepdims=True)
    # Ties within float noise: the cheapest such tier, then the lowest index.
    tied = u >= best - 1e-12
    key = np.where(tied, cost, np.inf)
    return np.asarray(key.argmin(axis=1), dtype=np.int64)


def decide_utility_one(
    p_correct: Sequence[float], cost: Sequence[float], lam: float, lo: int, hi: int
) -> int:
    """`decide_utility` for one row in plain Python."""
    utility = [p_correct[t] - lam * cost[t] for t in range(lo, hi + 1)]
    best = max(utility)
    best_t, best_c = lo, math.inf
    for i, u in enumerate(utility):
        if u >= best - 1e-12 and cost[lo + i] < best_c:
            best_t, best_c = lo + i, cost[lo + i]
    return best_t


def decide_threshold_one(p_sufficient: Sequence[float], threshold: float, lo: int, hi: int) -> int:
    tier = len(p_sufficient) - 1
    for i, value in enumerate(p_sufficient):
        if value >= threshold:
            tier = i
            break
    return lo if tier < lo else hi if tier > hi else tier
