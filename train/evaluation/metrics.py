"""Routing-evaluation metrics (pure numpy).

Conventions: ``quality`` is float [n_rows, n_tiers] in 0..1 (NaN = unknown), ``cost`` is
float [n_rows, n_tiers] in USD, tiers are in cost order, ``decisions`` is int [n_rows].
A :class:`Point` is (total cost, mean quality) over the rows.

Curve convention shared by every cost/quality curve (router, random, oracle): a curve is the
:func:`upper_envelope` of its operating points, because any two operating points can be mixed
at random. Below the cheapest point of a curve nothing is achievable (quality NaN, or 0 inside
:func:`normalised_auc` unless ``anchor_quality`` is given); beyond its last point it stays flat,
since spending more never forces quality down. For fair comparisons include the always-cheapest
tier point in every curve, e.g. ``upper_envelope(router_points + always_tier_points(q, c))``, so
all curves start at the same ``c_min``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class Point:
    """One operating point: total USD cost and mean quality over the evaluated rows."""

    cost: float
    quality: float


def _check_table(quality: ArrayLike, cost: ArrayLike | None = None) -> tuple[np.ndarray, ...]:
    q = np.asarray(quality, dtype=float)
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] == 0:
        raise ValueError(f"quality must be a non-empty 2-D [n_rows, n_tiers] array, got {q.shape}")
    if cost is None:
        return (q,)
    c = np.asarray(cost, dtype=float)
    if c.shape != q.shape:
        raise ValueError(f"cost shape {c.shape} does not match quality shape {q.shape}")
    return q, c


def _check_indices(x: ArrayLike, n_rows: int, n_tiers: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.shape[0] != n_rows:
        raise ValueError(f"{name} must be 1-D with {n_rows} entries, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integer tier indices, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= n_tiers):
        raise ValueError(f"{name} must lie in [0, {n_tiers - 1}], got [{a.min()}, {a.max()}]")
    return a


def _check_pair(labels: ArrayLike, decisions: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    n = lab.shape[0] if lab.ndim == 1 else -1
    if n <= 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {lab.shape}")
    lab = _check_indices(lab, n, np.iinfo(np.int64).max, "labels")
    return lab, _check_indices(decisions, n, np.iinfo(np.int64).max, "decisions")


def _curve_arrays(envelope: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
    if len(envelope) == 0:
        raise ValueError("envelope is empty")
    c = np.array([p.cost for p in envelope], dtype=float)
    q = np.array([p.quality for p in envelope], dtype=float)
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(q))):
        raise ValueError("envelope points must be finite")
    if np.any(np.diff(c) < 0):
        raise ValueError("envelope must be sorted by cost (build it with upper_envelope)")
    return c, q


def _first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Smallest x on the piecewise-linear curve (sorted by x) where y >= target; NaN if never."""
    hit = np.flatnonzero(y >= target)
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(x[0])
    frac = (target - y[i - 1]) / (y[i] - y[i - 1])  # y[i-1] < target <= y[i]
    return float(x[i - 1] + frac * (x[i] - x[i - 1]))


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def operating_point(decisions: ArrayLike, quality: ArrayLike, cost: ArrayLike) -> Point:
    """Total cost and mean quality of the routed tiers; rows with unknown (NaN) quality still
    cost money but are left out of the mean, so missing labels do not count as failures."""
    q, c = _check_table(quality, cost)
    d = _check_indices(decisions, q.shape[0], q.shape[1], "decisions")
    rows = np.arange(q.shape[0])
    routed_c, routed_q = c[rows, d], q[rows, d]
    if not np.all(np.isfinite(routed_c)):
        raise ValueError("cost of a routed tier is not finite")
    known = ~np.isnan(routed_q)
    mean_q = float(routed_q[known].mean()) if known.any() else float("nan")
    return Point(cost=float(routed_c.sum()), quality=mean_q)


def always_tier_points(quality: ArrayLike, cost: ArrayLike) -> list[Point]:
    """Operating point of sending every row to tier t, for each t (the fixed-model baselines)."""
    q, c = _check_table(quality, cost)
    n, t = q.shape
    return [operating_point(np.full(n, k), q, c) for k in range(t)]


def oracle_decisions(quality: ArrayLike, pass_mark: float = 0.5) -> np.ndarray:
    """Hindsight-optimal tier per row: the cheapest tier with quality >= pass_mark; if none
    passes, the tier with the highest known quality (ties to the cheapest); rows with no known
    quality go to tier 0, since no tier is known to do better. NaN never passes."""
    (q,) = _check_table(quality)
    passes = np.nan_to_num(q, nan=-np.inf) >= pass_mark
    best = np.nan_to_num(q, nan=-np.inf).argmax(axis=1)  # argmax returns the first max
    return np.where(passes.any(axis=1), passes.argmax(axis=1), best).astype(np.int64)


def upper_envelope(points: Sequence[Point]) -> list[Point]:
    """Cost/quality frontier reachable by randomly mixing any two operating points.

    Mixing gives every segment between points, so the frontier is the upper concave hull. It
    is kept only from the cheapest point up to the (cheapest) best-quality point, i.e. the
    strictly increasing, non-dominated part, sorted by cost. Collinear points are dropped.
    """
    if len(points) == 0:
        raise ValueError("points is empty")
    return upper_envelope_of(
        np.array([p.cost for p in points], dtype=float),
        np.array([p.quality for p in points], dtype=float),
    )


def upper_envelope_of(cost: np.ndarray, quality: np.ndarray) -> list[Point]:
    """`upper_envelope` of points given as arrays: a sweep over millions of thresholds needs
    no `Point` per candidate."""
    pts = np.column_stack([np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)])
    if len(pts) == 0:
        raise ValueError("points is empty")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must have finite cost and quality")
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]  # cost ascending, best quality first
    pts = pts[np.r_[True, np.diff(pts[:, 0]) > 0]]  # one point per cost: the best
    pts = pts[: int(pts[:, 1].argmax()) + 1]  # nothing beyond the best quality is useful
    hull: list[np.ndarray] = []
    for p in pts:
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            lhs, rhs = (x1 - x0) * (p[1] - y0), (y1 - y0) * (p[0] - x0)
            if lhs < rhs - 1e-12 * (abs(lhs) + abs(rhs)):  # hull[-1] strictly above chord
                break
            hull.pop()
        hull.append(p)
    return [Point(cost=float(x), quality=float(y)) for x, y in hull]


def quality_at_cost(envelope: Sequence[Point], cost: float) -> float:
    """Envelope quality at a budget: linear between points, NaN below the cheapest point
    (unaffordable), flat beyond the last one."""
    c, q = _curve_arrays(envelope)
    if cost < c[0]:
        return float("nan")
    return float(np.interp(cost, c, q))


def cost_at_quality(envelope: Sequence[Point], quality: float) -> float:
    """Minimum envelope cost reaching ``quality``: the first point's cost when even that point
    suffices, ``inf`` when no point reaches it (no finite budget does; compares cleanly)."""
    c, q = _curve_arrays(envelope)
    found = _first_crossing(c, q, quality)
    return float("inf") if np.isnan(found) else found


def normalised_auc(
    envelope: Sequence[Point], c_min: float, c_max: float, anchor_quality: float | None = None
) -> float:
    """Mean envelope quality over normalised cost x = (c - c_min) / (c_max - c_min) in [0, 1].

    Right of the last point the curve is flat. Left of the first point nothing is achievable,
    so that stretch scores 0; if ``anchor_quality`` is given (the always-cheapest-tier quality,
    the same value for every curve) the stretch is instead the segment from
    (c_min, anchor_quality) to the first point, i.e. random mixing with the cheapest tier.
    A first point at or below c_min is interpolated at c_min. Points past c_max only shape
    the value at c_max.
    """
    if not c_max > c_min:
        raise ValueError(f"need c_max > c_min, got c_min={c_min}, c_max={c_max}")
    c, q = _curve_arrays(envelope)
    area, lo = 0.0, float(c_min)
    if c[0] > c_min:
        lo = min(float(c[0]), float(c_max))
        if anchor_quality is not None:
            q_lo = anchor_quality + (q[0] - anchor_quality) * (lo - c_min) / (c[0] - c_min)
            area += (lo - c_min) * (anchor_quality + q_lo) / 2.0
    if lo < c_max:
        xs = np.concatenate(([lo], c[(c > lo) & (c < c_max)], [c_max]))
        area += _trapezoid(np.interp(xs, c, q), xs)
    return area / (c_max - c_min)


def gap_closed(router_auc: float, random_auc: float, oracle_auc: float) -> float:
    """Share of the random-mixing-to-oracle AUC gap closed by the router (1 = oracle,
    0 = no better than mixing fixed tiers, < 0 = worse); NaN when the gap is zero."""
    gap = oracle_auc - random_auc
    return float("nan") if gap == 0 else float((router_auc - random_auc) / gap)


def pgr(quality: float | np.ndarray, q_weak: float, q_strong: float) -> float | np.ndarray:
    """Performance gap recovered (RouteLLM): (quality - q_weak) / (q_strong - q_weak), so the
    weak model scores 0 and the strong model 1."""
    if q_strong == q_weak:
        raise ValueError("q_strong == q_weak: there is no gap to recover")
    out = (np.asarray(quality, dtype=float) - q_weak) / (q_strong - q_weak)
    return float(out) if out.ndim == 0 else out


def _pgr_curve(
    curve: ArrayLike, q_weak: float | None, q_strong: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sort a (strong-call share, quality) curve and convert qualities to PGR. Missing
    q_weak / q_strong are read off the curve at share 0 and share 1."""
    a = np.asarray(curve, dtype=float)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 2:
        raise ValueError(f"curve must be [k >= 2, 2] (share, quality) points, got {a.shape}")
    if not np.all(np.isfinite(a)) or a[:, 0].min() < 0 or a[:, 0].max() > 1:
        raise ValueError("curve must be finite with shares in [0, 1]")
    a = a[np.argsort(a[:, 0], kind="stable")]
    share, qual = a[:, 0], a[:, 1]
    for name, at, given in (("q_weak", 0.0, q_weak), ("q_strong", 1.0, q_strong)):
        if given is None and not np.any(share == at):
            raise ValueError(f"{name} not given and the curve has no point at share {at}")
    qw = float(qual[share == 0.0].mean()) if q_weak is None else q_weak
    qs = float(qual[share == 1.0].mean()) if q_strong is None else q_strong
    return share, np.asarray(pgr(qual, qw, qs))


def apgr(curve: ArrayLike, q_weak: float | None = None, q_strong: float | None = None) -> float:
    """Average performance gap recovered (RouteLLM): area under PGR against the share of calls
    to the strong model, by the trapezoid rule over the given points. As in RouteLLM's
    evaluate.py the area is divided by the share span (1 when the curve covers [0, 1], as the
    paper's integral over [0, 1] assumes), so always-weak scores 0 and always-strong 1."""
    share, g = _pgr_curve(curve, q_weak, q_strong)
    span = share[-1] - share[0]
    if span <= 0:
        raise ValueError("curve needs at least two distinct shares")
    return _trapezoid(g, share) / span


def cpt(
    curve: ArrayLike, pgr_target: float, q_weak: float | None = None, q_strong: float | None = None
) -> float:
    """Call-performance threshold (RouteLLM's CPT(x%)): minimum share of calls to the strong
    model, as a fraction in [0, 1], at which the piecewise-linear curve reaches PGR >=
    ``pgr_target`` (a fraction: 0.5 for CPT(50%)). On a curve whose quality rises with share
    this equals RouteLLM's ``np.interp``; NaN if no point reaches the target (RouteLLM's
    interp would clamp to the last share instead)."""
    share, g = _pgr_curve(curve, q_weak, q_strong)
    return _first_crossing(share, g, pgr_target)


def confusion_matrix(labels: ArrayLike, decisions: ArrayLike, n_tiers: int) -> np.ndarray:
    """Counts [n_tiers, n_tiers]: row = true (sufficient) tier, column = routed tier."""
    lab, dec = _check_pair(labels, decisions)
    if max(lab.max(), dec.max()) >= n_tiers:
        raise ValueError(f"labels/decisions must lie in [0, {n_tiers - 1}]")
    return np.bincount(lab * n_tiers + dec, minlength=n_tiers * n_tiers).reshape(n_tiers, n_tiers)


def accuracy(labels: ArrayLike, decisions: ArrayLike) -> float:
    """Share of rows routed exactly to their label tier."""
    lab, dec = _check_pair(labels, decisions)
    return float(np.mean(lab == dec))


def macro_f1(labels: ArrayLike, decisions: ArrayLike) -> float:
    """Unweighted mean of per-tier F1 = 2TP / (2TP + FP + FN), over tiers that occur in labels
    or decisions (as sklearn's default), so rare tiers weigh as much as common ones."""
    lab, dec = _check_pair(labels, decisions)
    cm = confusion_matrix(lab, dec, int(max(lab.max(), dec.max())) + 1)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2TP + FP + FN
    present = denom > 0
    return float(np.mean(2 * tp[present] / denom[present]))


def under_over_routing(labels: ArrayLike, decisions: ArrayLike) -> tuple[float, float]:
    """(under_rate, over_rate): share of rows sent below their label tier (quality risk) and
    above it (wasted cost)."""
    lab, dec = _check_pair(labels, decisions)
    return float(np.mean(dec < lab)), float(np.mean(dec > lab))


def reliability_curve(
    prob: ArrayLike, outcome: ArrayLike, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width reliability diagram on [0, 1]: (bin_mid, mean_pred, frac_pos, count) per
    bin. Bins are left-closed, the last also holds p = 1; empty bins give NaN means and count
    0. Rows with NaN outcome are ignored (unknown, not negative)."""
    p = np.asarray(prob, dtype=float)
    y = np.asarray(outcome, dtype=float)
    if p.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"prob and outcome must be 1-D of equal length, got {p.shape}, {y.shape}")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("prob must be finite and in [0, 1]")
    keep = ~np.isnan(y)
    p, y = p[keep], y[keep]
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=y, minlength=n_bins) / count
    bin_mid = (np.arange(n_bins) + 0.5) / n_bins
    return bin_mid, mean_pred, frac_pos, count


def expected_calibration_error(prob: ArrayLike, outcome: ArrayLike, n_bins: int = 10) -> float:
    """ECE: count-weighted mean |frac_pos - mean_pred| over non-empty equal-width bins; NaN
    outcomes ignored; NaN if no row has a known outcome."""
    _, mean_pred, frac_pos, count = reliability_curve(prob, outcome, n_bins)
    total = count.sum()
    if total == 0:
        return float("nan")
    used = count > 0
    return float(np.sum(count[used] * np.abs(frac_pos[used] - mean_pred[used])) / total)


def _check_p(p_sufficient: ArrayLike) -> np.ndarray:
    (p,) = _check_table(p_sufficient)
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1 + _TOL)):
        raise ValueError("p_sufficient must be finite and in [0, 1]")
    if np.any(np.diff(p, axis=1) < -_TOL):
        raise ValueError("p_sufficient must be non-decreasing along tiers")
    if np.any(np.abs(p[:, -1] - 1.0) > _TOL):
        raise ValueError("p_sufficient's last column must be 1.0 (the top tier always suffices)")
    return p


def _decide(p: np.ndarray, threshold: float) -> np.ndarray:
    ok = p >= threshold
    # The last tier is the fallback, so rounding in the last column can never leave a row out.
    return np.where(ok.any(axis=1), ok.argmax(axis=1), p.shape[1] - 1).astype(np.int64)


def decide(p_sufficient: ArrayLike, threshold: float) -> np.ndarray:
    """Route each row to the cheapest tier whose P(sufficient) >= threshold (ties pass).
    Higher thresholds buy quality with cost; threshold 0 sends every row to tier 0."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return _decide(_check_p(p_sufficient), threshold)


def threshold_sweep(
    p_sufficient: ArrayLike, quality: ArrayLike, cost: ArrayLike, thresholds: ArrayLike
) -> list[Point]:
    """Operating point of :func:`decide` at each threshold: the router's cost/quality curve
    (feed it to :func:`upper_envelope`)."""
    p = _check_p(p_sufficient)
    q, c = _check_table(quality, cost)
    if p.shape != q.shape:
        raise ValueError(f"p_sufficient shape {p.shape} does not match quality shape {q.shape}")
    taus = np.asarray(thresholds, dtype=float).ravel()
    if np.any(~np.isfinite(taus) | (taus < 0) | (taus > 1)):
        raise ValueError("thresholds must be in [0, 1]")
    if taus.size > 8 and _is_monotone(p) and np.all(np.isfinite(c)):
        cost, quality = _monotone_sweep(p, q, c, taus)
        return [Point(float(a), float(b)) for a, b in zip(cost, quality, strict=True)]
    return [operating_point(_decide(p, float(t)), q, c) for t in taus]


def _is_monotone(p: np.ndarray) -> bool:
    return bool(np.all(np.diff(p, axis=1) >= 0)) and bool(np.all(p[:, -1] >= 1.0))


def _monotone_sweep(
    p: np.ndarray, q: np.ndarray, c: np.ndarray, taus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Total cost and mean known quality of :func:`decide` at every threshold, in one pass.

    With p non-decreasing along the ladder and the top at 1, a row sits on tier
    #{t : p[t] < tau}, so raising tau past p[i, t] moves row i from tier t to t + 1. Sorting
    those moves once and summing their effects gives every threshold's operating point in
    O(n log n), where calling :func:`decide` per threshold costs O(n) each: the difference
    between milliseconds and minutes when every distinct probability is a candidate.
    """
    known = ~np.isnan(q)
    q0 = np.where(known, q, 0.0)
    edges = p[:, :-1].ravel()
    order = np.argsort(edges, kind="stable")
    d_cost = np.diff(c, axis=1).ravel()[order]
    d_q = np.diff(q0, axis=1).ravel()[order]
    d_known = np.diff(known.astype(np.int64), axis=1).ravel()[order]
    moved = np.searchsorted(edges[order], taus, side="left")  # moves with p < tau

    def total(base: float, deltas: np.ndarray) -> np.ndarray:
        running = np.concatenate(([0.0], np.cumsum(deltas)))
        return base + running[moved]

    cost = total(float(c[:, 0].sum()), d_cost)
    q_sum = total(float(q0[:, 0].sum()), d_q)
    n_known = np.rint(total(float(known[:, 0].sum()), d_known.astype(float)))
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = np.where(n_known > 0, q_sum / np.maximum(n_known, 1), np.nan)
    return cost, quality
