"""One pass over the rows, batch by batch: what scoring keeps of them.

`Outcomes` holds what every model is scored against (fixed tiers, the heuristic and the
oracle as running sums, overall and per group / source), `ModelTally` one model's running
sums (its default decisions, its served rule at every knob setting, confusion counts,
reliability bins). Only the threshold sweeps need rows after the pass, because their
thresholds are the distinct p values of all rows: for those, `Outcomes` keeps quality and
cost per row and `ModelTally` p_sufficient's non-top columns, in batch-sized chunks, never
texts. Quality and p are float32 where that is exact (0/1 outcomes; a bundle's probabilities
are float32 to begin with), cost float64: 4K + 8K + 4(K-1) bytes a row, 44 for three tiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from train.evaluation import metrics as m
from train.evaluation.baselines import oracle
from train.evaluation.tally import Confusion, KeyCounts, PointSums, Reliability, is_monotone

CALIBRATION_BINS = 10
KINDS = ("group", "source")  # the breakdowns of report.json


@dataclass(frozen=True)
class RuleCurve:
    """A decision rule as served: `decide(value, min_tier, max_tier)` -> tiers per row."""

    name: str  # "utility" or "threshold"
    settings: Sequence[float]  # cheapest first: the values the quality knob reaches
    default: float
    label: str  # how the default is shown, e.g. "utility, quality 0.95 (lambda 23.4)"
    # Routes rows held in memory; a streamed pass passes each batch's own to ModelTally.add.
    decide: Callable[[float, int, int], np.ndarray] | None = None
    qualities: Sequence[float | None] = ()  # the knob value behind each setting, if any


Decide = Callable[[float, int, int], np.ndarray]


def clamp_pairs(n_tiers: int) -> list[tuple[int, int]]:
    """(min_tier, max_tier) a gateway may set, min < max, in the report's order."""
    return [(lo, hi) for lo in range(n_tiers) for hi in range(lo + 1, n_tiers)]


@dataclass
class Batch:
    """Consecutive rows' outcomes and the baselines' decisions, keyed for the breakdowns."""

    quality: np.ndarray  # [b, K] float64, NaN unknown
    cost: np.ndarray  # [b, K] USD, finite
    sufficient: np.ndarray  # [b, K] 1 / 0 / NaN
    labels: np.ndarray  # [b] cheapest sufficient tier
    heuristic: np.ndarray  # [b]
    oracle: np.ndarray  # [b]
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> int codes [b]

    def __len__(self) -> int:
        return len(self.labels)


def compact(values: np.ndarray) -> np.ndarray:
    """float32 when that loses nothing (0/1 outcomes, a bundle's float32 probabilities),
    else a float64 copy."""
    small = values.astype(np.float32)
    return small if np.array_equal(small, values, equal_nan=True) else values.copy()


class Codes:
    """String keys (group names, source files) to dense int codes, first seen first."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def encode(self, names: Sequence[str]) -> np.ndarray:
        index = self.index
        return np.fromiter(
            (index.setdefault(n, len(index)) for n in names), dtype=np.int64, count=len(names)
        )

    def sorted(self) -> list[tuple[str, int]]:
        return sorted(self.index.items())


class Outcomes:
    """What every model on the same rows is scored against, added batch by batch."""

    def __init__(self, tier_names: list[str], pass_mark: float) -> None:
        self.tier_names = list(tier_names)
        self.pass_mark = pass_mark
        k = len(tier_names)
        self.always = [PointSums(k) for _ in range(k)]
        self.heuristic = PointSums(k)
        self.oracle = PointSums(k)
        self.codes = {kind: Codes() for kind in KINDS}
        self.always_by = {kind: [PointSums(k) for _ in range(k)] for kind in KINDS}
        self.heuristic_by = {kind: PointSums(k) for kind in KINDS}
        self.oracle_by = {kind: PointSums(k) for kind in KINDS}
        self.known_any = np.zeros(k, dtype=bool)
        self.rows = 0
        self.quality: list[np.ndarray] = []  # chunks [b, K], float32 where exact (`compact`)
        self.cost: list[np.ndarray] = []  # float64 chunks [b, K]

    def add(
        self,
        quality: np.ndarray,
        cost: np.ndarray,
        heuristic: np.ndarray,
        sufficient: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        groups: Sequence[str] = (),
        sources: Sequence[str] = (),
    ) -> Batch:
        """Add a batch; `sufficient` and `labels` default to those the outcomes imply."""
        q = np.asarray(quality, dtype=float)
        c = np.asarray(cost, dtype=float)
        if sufficient is None:
            with np.errstate(invalid="ignore"):
                sufficient = np.where(np.isnan(q), np.nan, (q >= self.pass_mark).astype(float))
        if labels is None:
            suff = np.nan_to_num(sufficient, nan=0.0) > 0
            suff[:, -1] |= ~suff.any(axis=1)
            labels = suff.argmax(axis=1)
        batch = Batch(
            q, c, sufficient, np.asarray(labels), np.asarray(heuristic), oracle(q, self.pass_mark)
        )
        for kind, names in (("group", groups), ("source", sources)):
            if len(names):
                batch.keys[kind] = self.codes[kind].encode(names)
        self._tally(batch)
        self.quality.append(compact(q))
        self.cost.append(c)
        return batch

    def _tally(self, b: Batch) -> None:
        n, k = len(b), len(self.tier_names)
        self.rows += n
        self.known_any |= ~np.isnan(b.quality).all(axis=0)
        for t in range(k):
            self.always[t].add(np.full(n, t), b.quality, b.cost)
        self.heuristic.add(b.heuristic, b.quality, b.cost)
        self.oracle.add(b.oracle, b.quality, b.cost)
        for kind, keys in b.keys.items():
            for t in range(k):
                self.always_by[kind][t].add(np.full(n, t), b.quality, b.cost, keys)
            self.heuristic_by[kind].add(b.heuristic, b.quality, b.cost, keys)
            self.oracle_by[kind].add(b.oracle, b.quality, b.cost, keys)

    def has(self, kind: str) -> bool:
        return bool(self.codes[kind].index)


class ModelTally:
    """One model's running figures on the rows of an `Outcomes`."""

    def __init__(self, outcomes: Outcomes, threshold: float, rule: RuleCurve | None) -> None:
        k = len(outcomes.tier_names)
        self.outcomes = outcomes
        self.threshold = threshold
        self.rule = rule
        self.default = PointSums(k)
        self.default_by = {kind: PointSums(k) for kind in KINDS}
        self.correct_by = {kind: KeyCounts() for kind in KINDS}
        self.confusion = Confusion(k)
        self.reliability = Reliability(k - 1, CALIBRATION_BINS)
        # The served rule's curve: one running operating point per clamp pair and setting.
        self.rule_sweep = (
            {(lo, hi): [PointSums(k) for _ in rule.settings] for lo, hi in clamp_pairs(k)}
            if rule
            else {}
        )
        self.p_low: list[np.ndarray] = []  # p_sufficient[:, :-1] chunks
        self.monotone = True

    def add(self, batch: Batch, p_sufficient: np.ndarray, decide: Decide | None = None) -> None:
        """Add this model's p_sufficient on the batch's rows; `decide(value, lo, hi)` routes
        the same rows under the served rule (required when the model has one)."""
        p = np.asarray(p_sufficient, dtype=float)
        q, c, k = batch.quality, batch.cost, len(self.outcomes.tier_names)
        if p.shape != q.shape:
            raise ValueError(f"p_sufficient shape {p.shape} does not match {q.shape}")
        if self.rule is None:
            d = m.decide(p, self.threshold)
        else:
            if decide is None:
                raise ValueError("a served rule needs its batch's decide function")
            d = decide(self.rule.default, 0, k - 1)
            for (lo, hi), sums in self.rule_sweep.items():
                for value, s in zip(self.rule.settings, sums, strict=True):
                    s.add(decide(value, lo, hi), q, c)
        self.default.add(d, q, c)
        self.confusion.add(batch.labels, d)
        self.reliability.add(p[:, :-1], batch.sufficient[:, :-1])
        for kind, keys in batch.keys.items():
            self.default_by[kind].add(d, q, c, keys)
            self.correct_by[kind].add(keys, batch.labels == d)
        low = p[:, :-1]
        self.p_low.append(compact(low))
        self.monotone = self.monotone and is_monotone(low)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(p non-top columns, quality, cost) per stored chunk, for the threshold sweeps."""
        yield from zip(self.p_low, self.outcomes.quality, self.outcomes.cost, strict=True)

    def distinct_p(self) -> np.ndarray:
        """Every distinct non-top p value (sorted, float64). Deduplicated chunk by chunk and
        in float32 while the chunks are, so the all-rows intermediates stay small."""
        if not self.p_low:
            return np.zeros(0)
        values = np.concatenate([np.unique(ch) for ch in self.p_low])
        return np.unique(values).astype(np.float64)
