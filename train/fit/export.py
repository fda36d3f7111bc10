"""sklearn heads -> one ONNX graph, checked for parity.

Schema 1: `features [n, F] -> p_tier [n, K-1]`. Schema 2: `features -> p_correct [n, K]` and,
when some tier's answer length is learned, `log_out_tokens [n, K]` (predicted log1p answer
length per tier, a regressor or a constant); without it serving uses the ladder's
output_tokens. Heads that are dense layers (logreg, mlp, their ensemble) and the length
regressors are stacked into one Gemm per layer (train.fit.stack): 2 nodes for the default
logreg bundle. Other heads (kNN) are converted one by one with skl2onnx (no ZipMap: a plain
probability tensor) and joined side by side on the shared input, the layout every schema-2
bundle had before (`stacked=False` still writes it), so serving pays for one ONNX Runtime call.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.compose import add_prefix
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.pipeline import Pipeline

from train.fit.families import MeanHead
from train.fit.heads import ConstantHead
from train.fit.stack import Dense, Stack, dense, logit, stack

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

    def stacked(self, name: str, s: Stack, out_op: str | None) -> str:
        """One Gemm per layer (hidden activation between), `out_op` last; writes `name`."""
        x = INPUT
        for i, (w, b) in enumerate(s.layers):
            self.inits.append(numpy_helper.from_array(w.astype(np.float32), f"{name}_w{i}"))
            self.inits.append(numpy_helper.from_array(b.astype(np.float32), f"{name}_b{i}"))
            last = i == len(s.layers) - 1
            z = name if last and out_op is None else f"{name}_z{i}"
            self.nodes.append(helper.make_node("Gemm", [x, f"{name}_w{i}", f"{name}_b{i}"], [z]))
            x = z
            if not last and s.hidden is not None:
                x = f"{name}_h{i}"
                self.nodes.append(helper.make_node(s.hidden, [z], [x]))
        if out_op is not None:
            self.nodes.append(helper.make_node(out_op, [x], [name]))
        return name

    def mean_of_stacks(self, name: str, stacks: list[Stack], width: int) -> onnx.ValueInfoProto:
        """Sigmoid of each stack; their mean when there are several (the ensemble)."""
        if len(stacks) == 1:
            self.stacked(name, stacks[0], "Sigmoid")
        else:
            cols = [self.stacked(f"{name}_m{i}", s, "Sigmoid") for i, s in enumerate(stacks)]
            inv = f"{name}_inv"
            self.inits.append(helper.make_tensor(inv, TensorProto.FLOAT, [], [1.0 / len(cols)]))
            self.nodes.append(helper.make_node("Sum", cols, [f"{name}_sum"]))
            self.nodes.append(helper.make_node("Mul", [f"{name}_sum", inv], [name]))
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width])

    def build(self, outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        used = {name for node in self.nodes for name in node.input}
        graph = helper.make_graph(
            self.nodes,
            "rung_tier_heads",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, self.n_features])],
            outputs,
            initializer=[i for i in self.inits if i.name in used],
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
    """Schema 1 layout: `features -> p_tier [n, len(heads)]` (what schema-1 bundles carry)."""
    b = _Builder(n_features)
    columns = [_head_column(b, t, h) for t, h in enumerate(heads)]
    return b.build([b.output(OUTPUT, columns)])


def _classifier_part(head: Pipeline | ConstantHead) -> Dense | float | None:
    if isinstance(head, ConstantHead):
        return logit(head.p)
    d = dense(head)
    return d if d is not None and d.classifier else None


def probability_stacks(heads: list[Head], n_features: int) -> list[Stack] | None:
    """One stack per ensemble member (one in all for the other families), or None when some
    head is not dense layers (kNN) and the graph needs one sub-graph per head."""
    members = {len(h.members) for h in heads if isinstance(h, MeanHead)}
    if len(members) > 1:
        return None
    stacks = []
    for i in range(members.pop() if members else 1):
        parts = [_classifier_part(h.members[i] if isinstance(h, MeanHead) else h) for h in heads]
        if any(p is None for p in parts):
            return None
        s = stack([p for p in parts if p is not None], n_features)
        if s is None:
            return None
        stacks.append(s)
    return stacks


def learns_lengths(lengths: list[Pipeline | float]) -> bool:
    """Whether any tier's answer length is a model: else the graph has no lengths output."""
    return any(not isinstance(m, float | int) for m in lengths)


def _length_stack(lengths: list[Pipeline | float], n_features: int) -> Stack | None:
    parts: list[Dense | float] = []
    for m in lengths:
        d = float(m) if isinstance(m, float | int) else dense(m)
        if d is None or (isinstance(d, Dense) and d.classifier):
            return None
        parts.append(d)
    return stack(parts, n_features)


def correctness_to_onnx(
    heads: list[Head], lengths: list[Pipeline | float], n_features: int, stacked: bool = True
) -> onnx.ModelProto:
    """Schema 2 layout: `features -> p_correct [n, K]`, plus `log_out_tokens [n, K]` when a
    tier's answer length is learned; a length model is a regressor of log1p(answer tokens) or a
    constant (the ladder's fallback). `stacked=False` writes the per-head layout of bundles
    before stacking (both outputs always): kept to build such bundles in tests."""
    if len(heads) != len(lengths):
        raise ExportError(f"{len(heads)} heads but {len(lengths)} length models")
    b = _Builder(n_features)
    stacks = probability_stacks(heads, n_features) if stacked else None
    if stacks is not None:
        outputs = [b.mean_of_stacks(CORRECT, stacks, len(heads))]
    else:
        outputs = [b.output(CORRECT, [_head_column(b, t, h) for t, h in enumerate(heads)])]
    if stacked and not learns_lengths(lengths):
        return b.build(outputs)
    length_stack = _length_stack(lengths, n_features) if stacked else None
    if length_stack is not None:
        b.stacked(LENGTHS, length_stack, None)
        outputs.append(
            helper.make_tensor_value_info(LENGTHS, TensorProto.FLOAT, [None, len(lengths)])
        )
    else:
        l_cols = [
            b.constant(f"l{t}_const", float(m))
            if isinstance(m, float | int)
            else b.model(f"l{t}_", m, False)
            for t, m in enumerate(lengths)
        ]
        outputs.append(b.output(LENGTHS, l_cols))
    return b.build(outputs)


def has_output(model: onnx.ModelProto, name: str) -> bool:
    return any(o.name == name for o in model.graph.output)


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
