"""Running sums added batch by batch equal metrics.py's one-pass figures on all rows."""

from __future__ import annotations

import numpy as np
import pytest

from train.evaluation import metrics as m
from train.evaluation.tally import (
    Confusion,
    PointSums,
    Reliability,
    threshold_sweep_sums,
)

RNG = np.random.default_rng(3)
N, K = 257, 3


def _table(n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monotone p [n, K], graded quality with ~10% unknown cells, positive costs."""
    p = np.sort(RNG.random((n, K)), axis=1)
    p[:, -1] = 1.0
    q = RNG.random((n, K)).round(2)
    q[RNG.random((n, K)) < 0.1] = np.nan
    c = RNG.random((n, K)) * [1, 3, 20]
    return p, q, c


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, n, size)]


def test_point_sums_per_key_match_operating_point():
    p, q, c = _table()
    d = m.decide(p, 0.4)
    keys = RNG.integers(0, 5, N)
    total, keyed = PointSums(K), PointSums(K)
    for s in _batches(N, 50):
        total.add(d[s], q[s], c[s])
        keyed.add(d[s], q[s], c[s], keys[s])
    ref = m.operating_point(d, q, c)
    assert total.point() == pytest.approx(ref)  # Point compares as a tuple of floats
    assert total.share() == pytest.approx(np.bincount(d, minlength=K) / N)
    for key in range(5):
        rows = keys == key
        got, want = keyed.point(key), m.operating_point(d[rows], q[rows], c[rows])
        assert (got.cost, got.quality) == pytest.approx((want.cost, want.quality), rel=1e-12)
        assert keyed.rows(key) == rows.sum()


def test_reliability_and_confusion_match_metrics():
    p, q, _ = _table()
    y = np.where(np.isnan(q), np.nan, (q >= 0.5).astype(float))
    rel = Reliability(K - 1)
    for s in _batches(N, 64):
        rel.add(p[s, :-1], y[s, :-1])
    for t in range(K - 1):
        want = m.reliability_curve(p[:, t], y[:, t])
        for got_part, want_part in zip(rel.curve(t), want, strict=True):
            np.testing.assert_allclose(got_part, want_part, rtol=1e-12)
        assert rel.ece(t) == pytest.approx(m.expected_calibration_error(p[:, t], y[:, t]))
    labels, d = RNG.integers(0, K, N), RNG.integers(0, K, N)
    cm = Confusion(K)
    for s in _batches(N, 40):
        cm.add(labels[s], d[s])
    np.testing.assert_array_equal(cm.counts, m.confusion_matrix(labels, d, K))
    assert cm.accuracy() == pytest.approx(m.accuracy(labels, d))
    assert cm.macro_f1() == pytest.approx(m.macro_f1(labels, d))
    assert cm.under_over() == pytest.approx(m.under_over_routing(labels, d))


@pytest.mark.parametrize("lo, hi", [(0, 2), (0, 1), (1, 2)])
@pytest.mark.parametrize("monotone", [True, False])
def test_threshold_sweep_sums_match_deciding_at_every_threshold(lo, hi, monotone):
    p, q, c = _table()
    dtype = np.float32  # a bundle's own precision, as rung eval stores it
    if not monotone:  # falls along the ladder by less than metrics.decide's tolerance
        p[::7, 1] = p[::7, 0] - 5e-10
        dtype = np.float64
    chunks = [(p[s, :-1].astype(dtype), q[s], c[s]) for s in _batches(N, 30)]
    p = np.column_stack([np.concatenate([ch[0] for ch in chunks]), np.ones(N)]).astype(float)
    taus = np.unique(np.concatenate([p[:, :-1].ravel(), np.linspace(0, 1, 11)]))
    sums = threshold_sweep_sums(chunks, taus, lo, hi, K)
    for i, tau in enumerate(taus):
        d = np.clip(np.where((p >= tau).any(axis=1), (p >= tau).argmax(axis=1), K - 1), lo, hi)
        want = m.operating_point(d, q, c)
        got = sums.point(i)
        assert (got.cost, got.quality) == pytest.approx((want.cost, want.quality), rel=1e-9)
        np.testing.assert_allclose(sums.share(i), np.bincount(d, minlength=K) / N)


def _whole_array_figures(p, quality, cost, threshold, pass_mark=0.5):
    """The gate's figures as computed before chunking: whole arrays, metrics.py sweeps."""
    from train.evaluation.gate import complete_rows, implied_outcomes
    from train.evaluation.operating import candidate_thresholds

    observed = int(complete_rows(quality).sum())
    q = implied_outcomes(quality, pass_mark)
    suff = np.where(np.isnan(q), np.nan, (q >= pass_mark).astype(float))
    ece = m.expected_calibration_error(p[:, :-1].ravel(), suff[:, :-1].ravel())
    full = complete_rows(q)
    p, q, c = p[full], q[full], cost[full]
    top = m.operating_point(np.full(len(q), q.shape[1] - 1), q, c)
    env = m.upper_envelope(m.threshold_sweep(p, q, c, candidate_thresholds(p)))
    at = m.threshold_sweep(p, q, c, [threshold])[0]
    return {
        "rows": int(full.sum()),
        "observed_rows": observed,
        "top_quality": top.quality,
        "top_cost": top.cost,
        "cost_at_target": m.cost_at_quality(env, 0.95 * top.quality),
        "ece": ece,
        "quality_at_threshold": at.quality,
        "cost_at_threshold": at.cost,
    }


def test_chunked_gate_figures_match_the_whole_array_gate():
    """rung eval --compare judges from chunks; rung retrain from arrays: the same figures."""
    from train.evaluation.gate import chunked_figures, figures

    p, q, c = _table(600)
    q = (q >= 0.5).astype(float)
    q[RNG.random(q.shape) < 0.2] = np.nan  # logs: untried tiers, some implied by a failure
    p32 = np.column_stack([p[:, :-1].astype(np.float32), np.ones(len(p))]).astype(float)
    want = _whole_array_figures(p32, q, c, 0.6)
    chunks = [(p32[s, :-1].astype(np.float32), q[s], c[s]) for s in _batches(600, 64)]
    for got in (chunked_figures(chunks, 0.6), figures(p32, q, c, 0.6)):
        assert got.rows > 50 and got.observed_rows < got.rows
        for key, value in want.items():
            assert getattr(got, key) == pytest.approx(value, rel=1e-9), key
