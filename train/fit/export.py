"""sklearn heads -> one ONNX graph `features [n, F] -> p_tier [n, K-1]`, checked for parity.

Each head is converted with skl2onnx (no ZipMap: a plain probability tensor), then the graphs
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

INPUT = "features"
OUTPUT = "p_tier"
TARGET_OPSET = 17


class ExportError(RuntimeError):
    """The exported graph does not reproduce the sklearn model."""


def _convert_head(head: Pipeline, n_features: int) -> onnx.ModelProto:
    classes = list(head[-1].classes_)
    if classes != [0, 1]:
        raise ExportError(f"a head must be binary with classes [0, 1], got {classes}")
    return convert_sklearn(
        head,
        initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        options={id(head[-1]): {"zipmap": False}},
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": 3},
    )


def heads_to_onnx(heads: list[Pipeline], n_features: int) -> onnx.ModelProto:
    nodes, inits, columns = [], [], []
    opsets: dict[str, int] = {}
    one = helper.make_tensor("p_tier_col", TensorProto.INT64, [1], [1])
    inits.append(one)
    for t, head in enumerate(heads):
        prefix = f"t{t}_"
        model = add_prefix(_convert_head(head, n_features), prefix)
        for op in model.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        graph = model.graph
        nodes.append(helper.make_node("Identity", [INPUT], [prefix + INPUT]))
        nodes.extend(graph.node)
        inits.extend(graph.initializer)
        probs = next(o.name for o in graph.output if o.name.endswith("probabilities"))
        col = f"{prefix}p1"
        nodes.append(helper.make_node("Gather", [probs, "p_tier_col"], [col], axis=1))
        columns.append(col)
    nodes.append(helper.make_node("Concat", columns, [OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        "rung_tier_heads",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, len(heads)])],
        initializer=inits,
    )
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="rung",
    )
    merged.ir_version = min(merged.ir_version, 9)
    onnx.checker.check_model(merged)
    return merged


def check_parity(
    model: onnx.ModelProto, expected: np.ndarray, x: np.ndarray, atol: float = 1e-4
) -> float:
    """Run the graph in ONNX Runtime and compare with sklearn; returns the max abs difference."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: x.astype(np.float32)})[0]
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if got.shape != expected.shape or diff > atol:
        raise ExportError(
            f"ONNX output differs from sklearn by {diff:.2e} (shape {got.shape} "
            f"vs {expected.shape})"
        )
    return diff
