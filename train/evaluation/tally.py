"""Evaluation figures added up batch by batch, so scoring never needs every row at once.

Each accumulator holds sums whose value after the last batch equals the one-pass figure of
metrics.py over all rows (up to float summation order): operating points (total cost, sum and
count of known quality, rows per tier), reliability bins and confusion counts. Keys (int
codes, e.g. of groups) split the same sums by group without a pass per group.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from train.evaluation.metrics import Point


class PointSums:
    """The sums behind `metrics.operating_point` of routing decisions, per key."""

    def __init__(self, n_tiers: int) -> None:
        self.k = n_tiers
        self.cost = np.zeros(1)
        self.q_sum = np.zeros(1)
        self.known = np.zeros(1, np.int64)
        self.traffic = np.zeros((1, n_tiers), np.int64)

    def _grow(self, n_keys: int) -> None:
        extra = n_keys - len(self.cost)
        if extra > 0:
            self.cost = np.concatenate([self.cost, np.zeros(extra)])
            self.q_sum = np.concatenate([self.q_sum, np.zeros(extra)])
            self.known = np.concatenate([self.known, np.zeros(extra, np.int64)])
            self.traffic = np.concatenate([self.traffic, np.zeros((extra, self.k), np.int64)])

    def add(
        self,
        decisions: np.ndarray,
        quality: np.ndarray,
        cost: np.ndarray,
        keys: np.ndarray | None = None,
    ) -> None:
        """Add a batch: `decisions` [b] tier indices, `quality` / `cost` [b, K], `keys` [b]."""
        d = np.asarray(decisions, dtype=np.int64)
        if not d.size:
            return
        if d.min() < 0 or d.max() >= self.k:
            raise ValueError(f"decisions must lie in [0, {self.k - 1}]")
        rows = np.arange(d.size)
        routed_c, routed_q = cost[rows, d], quality[rows, d]
        if not np.all(np.isfinite(routed_c)):
            raise ValueError("cost of a routed tier is not finite")
        known = ~np.isnan(routed_q)
        q0 = np.where(known, routed_q, 0.0)
        if keys is None:
            self.cost[0] += float(routed_c.sum())
            self.q_sum[0] += float(q0.sum())
            self.known[0] += int(known.sum())
            self.traffic[0] += np.bincount(d, minlength=self.k)
            return
        n_keys = int(keys.max()) + 1
        self._grow(n_keys)
        self.cost[:n_keys] += np.bincount(keys, weights=routed_c, minlength=n_keys)
        self.q_sum[:n_keys] += np.bincount(keys, weights=q0, minlength=n_keys)
        self.known[:n_keys] += np.bincount(keys[known], minlength=n_keys)
        flat = np.bincount(keys * self.k + d, minlength=n_keys * self.k)
        self.traffic[:n_keys] += flat.reshape(n_keys, self.k)

    def rows(self, key: int = 0) -> int:
        return int(self.traffic[key].sum())

    def point(self, key: int = 0) -> Point:
        n = int(self.known[key])
        return Point(float(self.cost[key]), float(self.q_sum[key] / n) if n else float("nan"))

    def share(self, key: int = 0) -> np.ndarray:
        return self.traffic[key] / max(self.rows(key), 1)


class KeyCounts:
    """Rows per key meeting a condition (e.g. routed to their label tier)."""

    def __init__(self) -> None:
        self.counts = np.zeros(1, np.int64)

    def add(self, keys: np.ndarray, hit: np.ndarray) -> None:
        if not keys.size:
            return
        n_keys = int(keys.max()) + 1
        if n_keys > self.counts.size:
            self.counts = np.concatenate([self.counts, np.zeros(n_keys - self.counts.size, int)])
        self.counts[:n_keys] += np.bincount(keys[hit], minlength=n_keys)


class Reliability:
    """Equal-width reliability bins per column, as `metrics.reliability_curve`: rows with an
    unknown (NaN) outcome are left out, the last bin also holds p = 1."""

    def __init__(self, n_columns: int, n_bins: int = 10) -> None:
        if n_bins < 1:
            raise ValueError("n_bins must be >= 1")
        self.n_bins = n_bins
        self.count = np.zeros((n_columns, n_bins), np.int64)
        self.p_sum = np.zeros((n_columns, n_bins))
        self.y_sum = np.zeros((n_columns, n_bins))

    def add(self, prob: np.ndarray, outcome: np.ndarray) -> None:
        """`prob` and `outcome` [b, columns]; prob in [0, 1], outcome 0 / 1 / NaN."""
        if not np.all(np.isfinite(prob)) or np.any((prob < 0) | (prob > 1)):
            raise ValueError("prob must be finite and in [0, 1]")
        for col in range(self.count.shape[0]):
            keep = ~np.isnan(outcome[:, col])
            p, y = prob[keep, col], outcome[keep, col]
            idx = np.minimum((p * self.n_bins).astype(np.int64), self.n_bins - 1)
            self.count[col] += np.bincount(idx, minlength=self.n_bins)
            self.p_sum[col] += np.bincount(idx, weights=p, minlength=self.n_bins)
            self.y_sum[col] += np.bincount(idx, weights=y, minlength=self.n_bins)

    def curve(self, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bin_mid, mean_pred, frac_pos, count), NaN means in empty bins."""
        count = self.count[col]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_pred = self.p_sum[col] / count
            frac_pos = self.y_sum[col] / count
        return (np.arange(self.n_bins) + 0.5) / self.n_bins, mean_pred, frac_pos, count

    def ece(self, col: int) -> float:
        _, mean_pred, frac_pos, count = self.curve(col)
        total = count.sum()
        if total == 0:
            return float("nan")
        used = count > 0
        return float(np.sum(count[used] * np.abs(frac_pos[used] - mean_pred[used])) / total)


class Confusion:
    """Counts [K, K]: row = label tier, column = routed tier; the classification figures of
    metrics.py (accuracy, macro F1, under / over routing) read off the counts."""

    def __init__(self, n_tiers: int) -> None:
        self.k = n_tiers
        self.counts = np.zeros((n_tiers, n_tiers), np.int64)

    def add(self, labels: np.ndarray, decisions: np.ndarray) -> None:
        lab, dec = np.asarray(labels, np.int64), np.asarray(decisions, np.int64)
        flat = np.bincount(lab * self.k + dec, minlength=self.k * self.k)
        self.counts += flat.reshape(self.k, self.k)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def accuracy(self) -> float:
        return float(np.trace(self.counts) / self.total)

    def macro_f1(self) -> float:
        """Mean per-tier F1 over tiers that occur in labels or decisions (as metrics.py)."""
        tp = np.diag(self.counts).astype(float)
        denom = self.counts.sum(axis=0) + self.counts.sum(axis=1)
        present = denom > 0
        return float(np.mean(2 * tp[present] / denom[present]))

    def under_over(self) -> tuple[float, float]:
        """Shares routed below the label tier and above it."""
        under = np.tril(self.counts, -1).sum() / self.total
        over = np.triu(self.counts, 1).sum() / self.total
        return float(under), float(over)

    def label_counts(self) -> list[int]:
        return [int(x) for x in self.counts.sum(axis=1)]


class SweepSums:
    """`PointSums` at each of T thresholds of one sweep: cost / q_sum / known [T],
    traffic [T, K]."""

    def __init__(self, cost: np.ndarray, q_sum: np.ndarray, known: np.ndarray, traffic: np.ndarray):
        self.cost, self.q_sum, self.known, self.traffic = cost, q_sum, known, traffic

    def point(self, i: int) -> Point:
        n = int(self.known[i])
        return Point(float(self.cost[i]), float(self.q_sum[i] / n) if n else float("nan"))

    def share(self, i: int) -> np.ndarray:
        return self.traffic[i] / max(int(self.traffic[i].sum()), 1)


def is_monotone(p_low: np.ndarray) -> bool:
    """p_sufficient's non-top columns never decrease along the ladder."""
    return bool(np.all(np.diff(p_low, axis=1) >= 0))


def threshold_sweep_sums(
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    taus: np.ndarray,
    lo: int,
    hi: int,
    n_tiers: int,
) -> SweepSums:
    """The threshold rule clamped to [lo, hi] at every threshold in `taus` (ascending), from
    chunks of (p_sufficient's non-top columns [b, K-1], quality [b, K], cost [b, K]).

    With p non-decreasing along the ladder (`is_monotone`) a row sits on tier
    lo + #{t in [lo, hi) : p[t] < tau}: raising tau past p[t] moves it from tier t to t + 1.
    Each move is bucketed by the first threshold it applies to, and a cumulative sum over
    the buckets gives every threshold's sums in one pass per chunk, the same figures as
    calling `decide` at each threshold, with memory bounded by the chunk.
    """
    n_taus = len(taus)
    taus = np.asarray(taus, dtype=np.float64)
    cost, q_sum = np.zeros(n_taus + 1), np.zeros(n_taus + 1)
    known = np.zeros(n_taus + 1, np.int64)
    traffic = np.zeros((n_taus + 1, n_tiers), np.int64)
    for p_low, quality, c in chunks:
        q = np.asarray(quality, dtype=np.float64)
        is_known = ~np.isnan(q)
        q0 = np.where(is_known, q, 0.0)
        cost[0] += float(c[:, lo].sum())
        q_sum[0] += float(q0[:, lo].sum())
        known[0] += int(is_known[:, lo].sum())
        traffic[0, lo] += len(q)
        for t in range(lo, hi):
            bucket = np.searchsorted(taus, p_low[:, t].astype(np.float64), side="right")
            cost += np.bincount(bucket, weights=c[:, t + 1] - c[:, t], minlength=n_taus + 1)
            q_sum += np.bincount(bucket, weights=q0[:, t + 1] - q0[:, t], minlength=n_taus + 1)
            known += np.bincount(bucket[is_known[:, t + 1]], minlength=n_taus + 1)
            known -= np.bincount(bucket[is_known[:, t]], minlength=n_taus + 1)
            moved = np.bincount(bucket, minlength=n_taus + 1)
            traffic[:, t] -= moved
            traffic[:, t + 1] += moved
    return SweepSums(
        np.cumsum(cost)[:n_taus],
        np.cumsum(q_sum)[:n_taus],
        np.cumsum(known)[:n_taus],
        np.cumsum(traffic, axis=0)[:n_taus],
    )
