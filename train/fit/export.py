"""sklearn heads -> one ONNX graph, checked for parity.

Schema 1: `features [n, F] -> p_tier [n, K-1]`. Schema 2: `features -> p_correct [n, K]` and
`log_out_tokens [n, K]` (predicted log1p answer length per tier, a regressor or a constant).
Each model is converted with skl2onnx (no ZipMap: a plain probability tensor), then the graphs
are joined side by side on the shared input so serving pays for a single ONNX Runtime call.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.compose import add_prefix
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.pipeline import Pipeline

from train.fit.families import MeanHead
from train.fit.heads import ConstantHead

INPUT = "features"
OUTPUT = "p_tier"
CORRECT = "p_correct"
LENGTHS = "log_out_tokens"
TARGET_OPSET = 17


class ExportError(RuntimeError):
    """The exported graph does not reproduce the sklearn model."""


def _convert(model: Pipeline, n_features: int, classifier: bool) -> onnx.ModelProto:
    if classifier:
        classes = list(model[-1].classes_)
        if classes != [0, 1]:
            raise ExportError(f"a head must be binary with classes [0, 1], got {classes}")
    options = {id(model[-1]): {"zipmap": False}} if classifier else None
    return convert_sklearn(
        model,
        initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        options=options,
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": 3},
    )


class _Builder:
    """Collects sub-graphs that read the shared input and each yield one [n, 1] column."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = [
            helper.make_tensor("col1", TensorProto.INT64, [1], [1]),
            helper.make_tensor("first_start", TensorProto.INT64, [1], [0]),
            helper.make_tensor("first_end", TensorProto.INT64, [1], [1]),
            helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0]),
        ]
        self.opsets: dict[str, int] = {"": TARGET_OPSET}
        self._zero_col: str | None = None

    def _zeros(self) -> str:
        """An [n, 1] column of zeros, shaped like the batch."""
        if self._zero_col is None:
            self.nodes.append(
                helper.make_node("Slice", [INPUT, "first_start", "first_end", "col1"], ["x0"])
            )
            self.nodes.append(helper.make_node("Mul", ["x0", "zero_f"], ["zero_col"]))
            self._zero_col = "zero_col"
        return self._zero_col

    def constant(self, name: str, value: float) -> str:
        self.inits.append(helper.make_tensor(f"{name}_value", TensorProto.FLOAT, [], [value]))
        self.nodes.append(helper.make_node("Add", [self._zeros(), f"{name}_value"], [name]))
        return name

    def model(self, prefix: str, model: Pipeline, classifier: bool) -> str:
        sub = add_prefix(_convert(model, self.n_features, classifier), prefix)
        for op in sub.opset_import:
            self.opsets[op.domain] = max(self.opsets.get(op.domain, 0), op.version)
        graph = sub.graph
        self.nodes.append(helper.make_node("Identity", [INPUT], [prefix + INPUT]))
        self.nodes.extend(graph.node)
        self.inits.extend(graph.initializer)
        col = f"{prefix}col"
        if classifier:
            probs = next(o.name for o in graph.output if o.name.endswith("probabilities"))
            self.nodes.append(helper.make_node("Gather", [probs, "col1"], [col], axis=1))
        else:
            out = graph.output[0].name
            self.nodes.append(helper.make_node("Reshape", [out, f"{prefix}shape"], [col]))
            self.inits.append(helper.make_tensor(f"{prefix}shape", TensorProto.INT64, [2], [-1, 1]))
        return col

    def output(self, name: str, columns: list[str]) -> onnx.ValueInfoProto:
        self.nodes.append(helper.make_node("Concat", columns, [name], axis=1))
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, len(columns)])

    def build(self, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "rung_tier_heads",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, self.n_features])],
            outputs,
            initializer=self.inits,
        )
        merged = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(self.opsets.items())],
            producer_name="rung",
        )
        merged.ir_version = min(merged.ir_version, 9)
        onnx.checker.check_model(merged)
        return merged


Head = Pipeline | ConstantHead | MeanHead


def _head_column(b: _Builder, t: int, head: Head, prefix: str = "") -> str:
    name = f"{prefix}t{t}_"
    if isinstance(head, ConstantHead):
        return b.constant(f"{name}const", head.p)
    if isinstance(head, MeanHead):
        cols = [_head_column(b, t, m, f"{name}m{i}_") for i, m in enumerate(head.members)]
        b.inits.append(helper.make_tensor(f"{name}inv", TensorProto.FLOAT, [], [1.0 / len(cols)]))
        b.nodes.append(helper.make_node("Sum", cols, [f"{name}sum"]))
        b.nodes.append(helper.make_node("Mul", [f"{name}sum", f"{name}inv"], [f"{name}mean"]))
        return f"{name}mean"
    return b.model(name, head, classifier=True)


def heads_to_onnx(heads: list[Head], n_features: int) -> onnx.ModelProto:
    """Schema 1 layout: `features -> p_tier [n, len(heads)]`."""
    b = _Builder(n_features)
    columns = [_head_column(b, t, h) for t, h in enumerate(heads)]
    return b.build([b.output(OUTPUT, columns)])


def correctness_to_onnx(
    heads: list[Head], lengths: list[Pipeline | float], n_features: int
) -> onnx.ModelProto:
    """Schema 2 layout: `features -> p_correct [n, K], log_out_tokens [n, K]`; a length model
    is a regressor of log1p(answer tokens) or a constant (the ladder's fallback)."""
    if len(heads) != len(lengths):
        raise ExportError(f"{len(heads)} heads but {len(lengths)} length models")
    b = _Builder(n_features)
    p_cols = [_head_column(b, t, h) for t, h in enumerate(heads)]
    l_cols = [
        b.constant(f"l{t}_const", float(m))
        if isinstance(m, float | int)
        else b.model(f"l{t}_", m, False)
        for t, m in enumerate(lengths)
    ]
    return b.build([b.output(CORRECT, p_cols), b.output(LENGTHS, l_cols)])


def check_parity(
    model: onnx.ModelProto,
    expected: np.ndarray,
    x: np.ndarray,
    atol: float = 1e-4,
    output: str = OUTPUT,
) -> float:
    """Run the graph in ONNX Runtime and compare with sklearn; returns the max abs difference."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run([output], {INPUT: x.astype(np.float32)})[0]
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if got.shape != expected.shape or diff > atol:
        raise ExportError(
            f"ONNX output differs from sklearn by {diff:.2e} (shape {got.shape} "
            f"vs {expected.shape})"
        )
    return diff
