"""Head families: every one exports through skl2onnx with parity, and AUTO picks by
cross-validated routing quality."""

from __future__ import annotations

import numpy as np
import pytest

from serve.model.ladder import default_ladder
from train.data.types import Dataset
from train.fit.choose import MIN_GAIN, candidates, choose_heads
from train.fit.decision import fit_costs
from train.fit.export import (
    CORRECT,
    LENGTHS,
    check_parity,
    correctness_to_onnx,
    probability_stacks,
)
from train.fit.families import (
    KNN_MAX_ROWS,
    EnsembleClassifier,
    FamilyClassifier,
    HeadFamily,
    MeanHead,
)
from train.fit.heads import ConstantHead, TierClassifier

NAMES = ["small", "medium", "large"]
DIM = 8


def _synthetic(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An L2-normalised 'embedding' plus a log-length column; the first coordinate drives
    which tiers suffice; the top tier always does (a constant head)."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    x = np.column_stack([emb, np.log1p(rng.integers(5, 500, size=n))]).astype(np.float32)
    label = np.digitize(emb[:, 0] + 0.05 * rng.normal(size=n), [-0.15, 0.15])
    return x, (np.arange(3)[None, :] >= label[:, None]).astype(float)


@pytest.fixture(scope="module")
def fitted() -> dict[str, object]:
    x, q = _synthetic()
    logreg = TierClassifier(NAMES, include_top=True).fit(x, q)
    mlp = FamilyClassifier(HeadFamily.MLP, NAMES, DIM).fit(x, q)
    knn = FamilyClassifier(HeadFamily.KNN, NAMES, DIM).fit(x, q)
    return {
        "x": x,
        "q": q,
        "logreg": logreg,
        "mlp": mlp,
        "knn": knn,
        "ensemble": EnsembleClassifier([logreg, mlp], NAMES),
    }


# Nodes of the stacked graph per family (one Gemm per layer for every head together; kNN
# keeps skl2onnx's sub-graph per head); the per-head layout took 16 nodes for logreg.
STACKED_OPS = {
    "logreg": ["Gemm", "Sigmoid"],
    "mlp": ["Gemm", "Relu", "Gemm", "Sigmoid"],
    "ensemble": ["Gemm", "Sigmoid", "Gemm", "Relu", "Gemm", "Sigmoid", "Sum", "Mul"],
    "knn": None,
}


@pytest.mark.parametrize("family", ["logreg", "mlp", "knn", "ensemble"])
def test_every_family_exports_to_onnx_with_parity(fitted, family):
    clf, x = fitted[family], fitted["x"]
    assert isinstance(clf.heads[-1], ConstantHead)  # the top tier: one class
    lengths = [float(np.log1p(300))] * 3
    graph = correctness_to_onnx(clf.heads, lengths, x.shape[1])
    expected = clf.p_tier(x)
    assert expected.shape == (len(x), 3)
    assert check_parity(graph, expected, x, output=CORRECT) < 1e-4
    # No tier learned its answer length: no second output (serving uses output_tokens).
    assert [o.name for o in graph.graph.output] == [CORRECT]
    ops = [n.op_type for n in graph.graph.node]
    if STACKED_OPS[family] is not None:
        assert ops == STACKED_OPS[family]
    else:
        assert probability_stacks(clf.heads, x.shape[1]) is None
        assert "Gemm" not in ops
    # The layout bundles had before stacking gives the same numbers, lengths included.
    per_head = correctness_to_onnx(clf.heads, lengths, x.shape[1], stacked=False)
    assert len(per_head.graph.node) > len(graph.graph.node)
    assert check_parity(per_head, expected, x, output=CORRECT) < 1e-4
    np.testing.assert_allclose(
        check_parity(per_head, np.full((len(x), 3), np.log1p(300)), x, output=LENGTHS),
        0,
        atol=1e-4,
    )
    # The heads learn the signal: P(small suffices) falls with the first coordinate.
    corr = np.corrcoef(x[:, 0], expected[:, 0])[0, 1]
    assert corr < -0.3, corr


def test_the_ensemble_is_the_mean_of_its_members(fitted):
    ens, x = fitted["ensemble"], fitted["x"]
    assert isinstance(ens.heads[0], MeanHead)
    np.testing.assert_allclose(
        ens.p_tier(x), (fitted["logreg"].p_tier(x) + fitted["mlp"].p_tier(x)) / 2, atol=1e-12
    )


def test_knn_reads_only_the_embedding(fitted):
    knn, x = fitted["knn"], fitted["x"]
    shifted = x.copy()
    shifted[:, -1] += 100.0  # the log-length column: ignored by the cosine neighbours
    np.testing.assert_allclose(knn.p_tier(shifted), knn.p_tier(x))


def test_out_of_fold_predictions_come_from_heads_that_never_saw_the_row(fitted):
    x, q = fitted["x"], fitted["q"]
    knn = fitted["knn"]
    oof = knn.out_of_fold(x, q)
    assert oof.shape == (len(x), 3) and np.all(np.isfinite(oof))
    # In-sample kNN includes the row itself among its neighbours; out of fold it cannot.
    assert not np.allclose(oof[:, 0], knn.p_tier(x)[:, 0])


def test_auto_tries_every_family_and_knn_only_on_small_sets():
    assert candidates(HeadFamily.AUTO, 100) == [
        HeadFamily.LOGREG,
        HeadFamily.MLP,
        HeadFamily.ENSEMBLE,
        HeadFamily.KNN,
    ]
    assert HeadFamily.KNN not in candidates(HeadFamily.AUTO, KNN_MAX_ROWS + 1)
    assert candidates(HeadFamily.MLP, 10**6) == [HeadFamily.MLP]


def test_auto_keeps_the_best_cross_validated_family(fitted):
    x, q = fitted["x"], fitted["q"]
    n = len(x)
    ladder = default_ladder()
    cost = np.tile([1e-4, 3e-4, 1e-2], (n, 1))
    ds = Dataset(
        ladder,
        [str(i) for i in range(n)],
        ["x"] * n,
        q,
        cost,
        [""] * n,
        [""] * n,
        np.ones(n),
        [""] * n,
    )
    costs = fit_costs(ladder, 512, x, ds, np.full(n, 10), np.full(n, 10))
    logreg = fitted["logreg"]
    oof = logreg.out_of_fold(x, q, raw=True)
    choice = choose_heads(
        HeadFamily.AUTO, logreg, oof, x, ds, costs, np.ones(n, bool), DIM, log=lambda *_: None
    )
    scores = {HeadFamily(k): v for k, v in choice.figures["cv_utility_curve_auc"].items()}
    assert set(scores) == set(candidates(HeadFamily.AUTO, n))
    best = max(scores, key=scores.get)
    if best is not HeadFamily.LOGREG and scores[best] > scores[HeadFamily.LOGREG] + MIN_GAIN:
        assert choice.family is best
    else:
        assert choice.family is HeadFamily.LOGREG
    assert choice.oof_raw.shape == (n, 3)


def test_two_processes_give_the_same_heads_as_one(monkeypatch):
    """Fits are seeded and independent, so running them in worker processes changes nothing."""
    from train.fit import families

    x, q = _synthetic(200, seed=4)
    results = {}
    for jobs in (1, 2):
        monkeypatch.setattr(families, "workers_for", lambda cells, jobs=jobs: jobs)
        clf = FamilyClassifier(HeadFamily.MLP, NAMES, DIM).fit(x, q)
        results[jobs] = (clf.p_tier(x), clf.out_of_fold(x, q))
    np.testing.assert_array_equal(results[1][0], results[2][0])
    np.testing.assert_array_equal(results[1][1], results[2][1])
    assert np.isfinite(results[2][1]).all()
