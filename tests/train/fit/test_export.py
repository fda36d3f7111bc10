"""The stacked classifier graph: constant heads folded into the bias, the lengths output only
when a tier learned its answer length, parity with sklearn for every shape, and heads that do
not stack falling back to one sub-graph per head."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from train.fit.export import (
    CORRECT,
    LENGTHS,
    check_parity,
    correctness_to_onnx,
    has_output,
    probability_stacks,
)
from train.fit.heads import ConstantHead

F = 7


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features on different scales and offsets (so folding the scaler matters), two binary
    targets and a length target."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, F)) * np.arange(1, F + 1) + np.arange(F) * 3).astype(np.float32)
    y = np.column_stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 5]).astype(int)
    log_len = 3.0 + 0.2 * x[:, 3] + 0.05 * rng.normal(size=n)
    return x, y, log_len


def _logreg(x: np.ndarray, y: np.ndarray, scaler: object | None = None) -> Pipeline:
    return Pipeline([("scale", scaler or StandardScaler()), ("logreg", LogisticRegression())]).fit(
        x, y
    )


def _mlp(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], act: str = "relu") -> Pipeline:
    mlp = MLPClassifier(hidden, activation=act, early_stopping=True, random_state=0)
    return Pipeline([("scale", StandardScaler()), ("mlp", mlp)]).fit(x, y)


def _p(heads: list, x: np.ndarray) -> np.ndarray:
    return np.column_stack([h.predict_proba(x)[:, 1] for h in heads])


def _ops(graph) -> list[str]:
    return [n.op_type for n in graph.graph.node]


CONSTANT_LENGTHS = [float(np.log1p(300))] * 3


def test_logreg_heads_and_a_constant_top_head_are_one_gemm_and_one_sigmoid():
    x, y, _ = _data()
    top = ConstantHead(np.ones(40))
    heads = [_logreg(x, y[:, 0]), _logreg(x, y[:, 1]), top]
    graph = correctness_to_onnx(heads, CONSTANT_LENGTHS, F)
    assert _ops(graph) == ["Gemm", "Sigmoid"]  # the per-head layout: 16 nodes
    assert len(correctness_to_onnx(heads, CONSTANT_LENGTHS, F, stacked=False).graph.node) == 16
    assert not has_output(graph, LENGTHS)
    assert check_parity(graph, _p(heads, x), x, atol=1e-5, output=CORRECT) < 1e-5
    # The constant column is the head's p for every row, whatever the features.
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    wild = np.full((3, F), 1e4, np.float32)
    np.testing.assert_allclose(session.run([CORRECT], {"features": wild})[0][:, 2], top.p, 1e-6)


def test_learned_lengths_are_one_more_gemm_with_the_fallback_as_bias():
    x, y, log_len = _data()
    ridge = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=1.0))]).fit(x, log_len)
    heads = [_logreg(x, y[:, 0]), _logreg(x, y[:, 1]), ConstantHead(np.ones(40))]
    lengths: list = [float(np.log1p(300)), ridge, float(np.log1p(50))]
    graph = correctness_to_onnx(heads, lengths, F)
    assert _ops(graph) == ["Gemm", "Sigmoid", "Gemm"]
    want = np.column_stack(
        [np.full(len(x), np.log1p(300)), ridge.predict(x), np.full(len(x), np.log1p(50))]
    )
    assert check_parity(graph, want, x, atol=1e-4, output=LENGTHS) < 1e-4
    assert check_parity(graph, _p(heads, x), x, atol=1e-5, output=CORRECT) < 1e-5


@pytest.mark.parametrize(
    ("hidden", "act", "ops"),
    [
        ((16,), "relu", ["Gemm", "Relu", "Gemm", "Sigmoid"]),
        ((8, 5), "tanh", ["Gemm", "Tanh", "Gemm", "Tanh", "Gemm", "Sigmoid"]),
        ((6,), "identity", ["Gemm", "Gemm", "Sigmoid"]),
    ],
)
def test_mlp_heads_stack_layer_by_layer_with_a_constant_head(hidden, act, ops):
    x, y, _ = _data()
    # Different widths per head: the layers after the first are block-diagonal.
    heads = [_mlp(x, y[:, 0], hidden, act), _mlp(x, y[:, 1], tuple(h + 3 for h in hidden), act)]
    heads.append(ConstantHead(np.array([1, 1, 1, 0])))
    graph = correctness_to_onnx(heads, CONSTANT_LENGTHS, F)
    assert _ops(graph) == ops
    assert check_parity(graph, _p(heads, x), x, atol=1e-5, output=CORRECT) < 1e-5


def test_heads_that_do_not_stack_keep_one_sub_graph_each():
    x, y, _ = _data()
    # A MinMaxScaler head is not folded; mixed depths (logreg beside an mlp) do not stack.
    for heads in (
        [_logreg(x, y[:, 0], MinMaxScaler()), _logreg(x, y[:, 1]), ConstantHead(np.ones(9))],
        [_logreg(x, y[:, 0]), _mlp(x, y[:, 1], (4,)), ConstantHead(np.ones(9))],
    ):
        assert probability_stacks(heads, F) is None
        graph = correctness_to_onnx(heads, CONSTANT_LENGTHS, F)
        assert _ops(graph).count("Identity") == 2  # one skl2onnx sub-graph per learned head
        assert check_parity(graph, _p(heads, x), x, atol=1e-5, output=CORRECT) < 1e-5
        assert not has_output(graph, LENGTHS)


def test_a_scaler_without_centring_or_scaling_folds_too():
    x, y, _ = _data()
    heads = [
        _logreg(x, y[:, 0], StandardScaler(with_mean=False)),
        _logreg(x, y[:, 1], StandardScaler(with_std=False)),
        ConstantHead(np.ones(9)),
    ]
    graph = correctness_to_onnx(heads, CONSTANT_LENGTHS, F)
    assert _ops(graph) == ["Gemm", "Sigmoid"]
    assert check_parity(graph, _p(heads, x), x, atol=1e-5, output=CORRECT) < 1e-5
