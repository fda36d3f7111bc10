"""The promotion gate: is a candidate model at least as good as the one it would replace?

Criterion (default): the cost of reaching `quality_share` (95%) of always-top-tier quality on
the model's cost/quality frontier (threshold sweep -> upper envelope -> `cost_at_quality`);
costs within `cost_tolerance` of each other are a tie, decided by calibration (ECE of
p_sufficient against known outcomes, pooled over the tiers below the top). Shared by
`rung retrain --promote` and `rung eval --compare`.

Rows may carry unknown outcomes (escalation logs never try some tiers). The cost criterion
needs the quality of whatever tier a threshold picks, so it is computed on the rows whose
outcome is known on every tier; calibration uses every known (row, tier) pair.

Before that, and for the gate's evaluation only, `implied_outcomes` applies the ordered
ladder's contrapositive: a tier that failed implies every cheaper tier fails too (had a cheaper
tier sufficed, this one would have). It is the same ordering assumption the log labels already
make upwards (every tier above the lowest success is sufficient), used downwards. Cascade logs
start at the routed tier, so without it only requests that started at the cheapest tier are
complete; with it, only requests whose *first* attempt succeeded above the cheapest tier stay
incomplete. Nothing else is filled in, and training labels never go through it
(`train.data.logs.derive_labels` leaves tiers below a failure unknown). It is an assumption, not a
fact of the data: docs/retraining.md reports how often it held on RouterBench.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np

from train.evaluation.metrics import cost_at_quality, upper_envelope_of
from train.evaluation.tally import PointSums, Reliability, threshold_sweep_sums


@dataclass(frozen=True)
class GateCriterion:
    quality_share: float = 0.95  # of always-top quality, on the same rows
    cost_tolerance: float = 0.01  # relative: closer costs are a tie, broken by calibration
    ece_tolerance: float = 0.01  # absolute: a tie passes if ECE is not worse by more than this
    min_rows: int = 50  # fewer complete held-out rows than this: the gate cannot judge
    # Count a tier as failed when a dearer tier failed (`implied_outcomes`), evaluation only.
    infer_cheaper_failures: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": f"cost at {self.quality_share:.0%} of always-top quality, then ECE",
            **asdict(self),
        }


class Verdict(str, Enum):
    BETTER = "better"  # cheaper at the quality target
    TIE = "tie"  # same cost within tolerance, calibration not worse
    WORSE = "worse"  # dearer, or a tie with worse calibration
    UNKNOWN = "unknown"  # too few rows to judge


@dataclass(frozen=True)
class Figures:
    """One model's gate figures on one set of rows (costs are totals over the scored rows)."""

    rows: int  # rows scored by the cost criterion (every tier's outcome known, or implied)
    observed_rows: int  # of the same rows, those complete before `implied_outcomes`
    top_quality: float  # always-top quality on those rows
    target_quality: float
    cost_at_target: float  # USD on the envelope; inf when unreachable
    top_cost: float  # always-top cost on those rows
    ece: float
    ece_pairs: int  # known (row, tier) pairs below the top tier
    threshold: float
    quality_at_threshold: float
    cost_at_threshold: float
    # Scored rows by their cheapest sufficient tier, then those no tier solves: the inference
    # completes mostly rows whose first attempt failed, so this shows what the sample holds.
    cheapest_sufficient: tuple[int, ...] = ()

    @property
    def cost_share_of_top(self) -> float:
        return self.cost_at_target / self.top_cost if self.top_cost else math.nan

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_share_of_top"] = self.cost_share_of_top
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str

    @property
    def accept(self) -> bool:
        return self.verdict in (Verdict.BETTER, Verdict.TIE)


def complete_rows(quality: np.ndarray) -> np.ndarray:
    return ~np.isnan(quality).any(axis=1)


def implied_outcomes(quality: np.ndarray, pass_mark: float = 0.5) -> np.ndarray:
    """A copy of `quality` [n, K] where every unknown tier cheaper than a known-insufficient
    tier scores 0.0 (insufficient, as a logged failure does).

    An inference from the ladder's ordering, not an observation: if a cheaper tier had
    sufficed, the dearer one that failed would have too. Known outcomes are never changed
    (a cheaper success above which a tier failed stays a success); a tier left unknown
    because it both failed and succeeded is treated like an untried one. For the gate's
    evaluation only: training labels keep these tiers unknown.
    """
    q = np.array(quality, dtype=float, copy=True)
    if q.ndim != 2:
        raise ValueError(f"quality must be [rows, tiers], got shape {q.shape}")
    known = ~np.isnan(q)
    failed = np.zeros_like(known)
    failed[known] = q[known] < pass_mark
    # True at tier t when tier t or a dearer one failed: a cumulative OR from the top down.
    at_or_below_failure = np.logical_or.accumulate(failed[:, ::-1], axis=1)[:, ::-1]
    q[~known & at_or_below_failure] = 0.0
    return q


Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]  # p_sufficient[:, :-1], quality, cost


def figures(
    p_sufficient: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    threshold: float,
    pass_mark: float = 0.5,
    criterion: GateCriterion | None = None,
) -> Figures:
    """Gate figures for one model; `quality` may hold NaN (unknown) outcomes. With the
    criterion's `infer_cheaper_failures`, `implied_outcomes` fills tiers below a failure first
    (cost criterion and ECE alike)."""
    chunk = (np.asarray(p_sufficient)[:, :-1], quality, cost)
    return chunked_figures([chunk], threshold, pass_mark, criterion)


def chunked_figures(
    chunks: Sequence[Chunk],
    threshold: float,
    pass_mark: float = 0.5,
    criterion: GateCriterion | None = None,
) -> Figures:
    """`figures` from rows in chunks of (p_sufficient's non-top columns, quality, cost), read
    three times (sums and candidate thresholds, the sweep, the threshold's point) and never
    joined into whole-table arrays: `rung eval --compare` keeps its rows that way."""
    crit = criterion or GateCriterion()
    k = np.shape(chunks[0][1])[1]

    def implied() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        for p_low, q, c in chunks:
            q = np.asarray(q, dtype=float)
            yield p_low, q, implied_outcomes(q, pass_mark) if crit.infer_cheaper_failures else q, c

    def complete() -> Iterator[Chunk]:
        for p_low, _, q, c in implied():
            full = complete_rows(q)
            yield p_low[full], q[full], c[full]

    observed, pooled, top = 0, Reliability(1), PointSums(k)
    cheapest, distinct = np.zeros(k + 1, np.int64), [np.linspace(0, 1, 201)]
    for p_low, raw, q, _ in implied():
        observed += int(complete_rows(raw).sum())
        with np.errstate(invalid="ignore"):
            sufficient = np.where(np.isnan(q), np.nan, (q >= pass_mark).astype(float))
        pooled.add(np.asarray(p_low, dtype=float).reshape(-1, 1), sufficient[:, :-1].reshape(-1, 1))
    for p_low, q, c in complete():
        top.add(np.full(len(q), k - 1), q, c)
        passes = q >= pass_mark
        cheapest += np.bincount(
            np.where(passes.any(axis=1), passes.argmax(axis=1), k), minlength=k + 1
        )
        distinct.append(np.unique(p_low))
    pairs = int(pooled.count.sum())
    ece = pooled.ece(0) if pairs else math.nan
    nan, rows = math.nan, top.rows()
    if not rows:
        return Figures(0, observed, nan, nan, math.inf, nan, ece, pairs, threshold, nan, nan)
    top_point = top.point()
    target = crit.quality_share * top_point.quality
    values = np.unique(np.concatenate(distinct))
    taus = values[(values >= 0) & (values <= 1)]  # candidate_thresholds over the complete rows
    sweep = threshold_sweep_sums(complete(), taus, 0, k - 1, k, traffic=False)
    envelope = upper_envelope_of(sweep.cost, sweep.quality())
    del sweep, taus, values, distinct
    at = threshold_sweep_sums(complete(), np.array([float(threshold)]), 0, k - 1, k).point(0)
    return Figures(
        rows,
        observed,
        top_point.quality,
        target,
        cost_at_quality(envelope, target),
        top_point.cost,
        ece,
        pairs,
        threshold,
        at.quality,
        at.cost,
        tuple(int(n) for n in cheapest),
    )


def _pct(a: float, b: float) -> str:
    return f"{(a - b) / b:+.1%}" if b else "n/a"


def judge(candidate: Figures, base: Figures, criterion: GateCriterion | None = None) -> Decision:
    """Lexicographic: cost at the quality target, then calibration."""
    crit = criterion or GateCriterion()
    share = f"{crit.quality_share:.0%} of top-tier quality"
    if min(candidate.rows, base.rows) < crit.min_rows:
        implied = (
            f" ({base.observed_rows} observed, the rest implied by a dearer tier's failure)"
            if crit.infer_cheaper_failures
            else ""
        )
        return Decision(
            Verdict.UNKNOWN,
            f"only {min(candidate.rows, base.rows)} held-out rows have every tier's outcome "
            f"known{implied} (need {crit.min_rows}); cannot judge",
        )
    cand, old = candidate.cost_at_target, base.cost_at_target
    if math.isinf(cand) and not math.isinf(old):
        return Decision(
            Verdict.WORSE, f"candidate never reaches {share}; the base does at ${old:.4g}"
        )
    if not math.isinf(cand) and math.isinf(old):
        return Decision(
            Verdict.BETTER, f"candidate reaches {share} at ${cand:.4g}; the base never does"
        )
    if not (math.isinf(cand) and math.isinf(old)):
        if cand < old * (1 - crit.cost_tolerance):
            return Decision(
                Verdict.BETTER, f"cheaper at {share}: ${cand:.4g} vs ${old:.4g} ({_pct(cand, old)})"
            )
        if cand > old * (1 + crit.cost_tolerance):
            return Decision(
                Verdict.WORSE, f"dearer at {share}: ${cand:.4g} vs ${old:.4g} ({_pct(cand, old)})"
            )
    tie = f"cost at {share} within {crit.cost_tolerance:.0%} (${cand:.4g} vs ${old:.4g})"
    if math.isnan(candidate.ece) or math.isnan(base.ece):
        return Decision(Verdict.TIE, f"{tie}; no known outcomes to compare calibration")
    if candidate.ece <= base.ece + crit.ece_tolerance:
        return Decision(
            Verdict.TIE, f"{tie}; calibration not worse (ECE {candidate.ece:.3f} vs {base.ece:.3f})"
        )
    return Decision(
        Verdict.WORSE,
        f"{tie}, but calibration is worse (ECE {candidate.ece:.3f} "
        f"vs {base.ece:.3f}, tolerance {crit.ece_tolerance})",
    )
