"""Heads as dense layers, stacked so that all of a bundle's heads run as one chain of Gemms.

skl2onnx converts each head on its own (a Scaler, a LinearClassifier and a Gather per
logistic-regression head, and three nodes to build a constant column), and ONNX Runtime pays
about 0.4 us per node on one row: 16 nodes took 11.4 us a run where one node takes 5.2. A
head is a few dense layers (a logistic regression is one), so folding the StandardScaler into
the first layer and placing the heads' weights side by side (block-diagonal after the first
layer) gives one Gemm per layer for every head together. A constant head becomes a column with
zero weights and its value as the bias (logit(p) before a Sigmoid), costing no node at all.
Heads that are not dense layers (kNN) return None here and keep skl2onnx's per-head conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

# sklearn's MLP hidden activations and the ONNX op computing each ("identity": none)
HIDDEN_OPS = {"relu": "Relu", "logistic": "Sigmoid", "tanh": "Tanh", "identity": None}


@dataclass(frozen=True)
class Dense:
    """A head as dense layers: `hidden` between layers, the output op (Sigmoid for a
    classifier, none for a regressor) after the last."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weights [in, out], bias [out]), float64
    hidden: str | None = None
    classifier: bool = True  # P(class 1) = Sigmoid of the last layer; else a regressor

    @property
    def depth(self) -> int:
        return len(self.layers)


def _standardised(scaler: Any, weights: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fold `(x - mean) / scale` into the first layer: x @ (W / scale) + (b - mean/scale @ W)."""
    if not isinstance(scaler, StandardScaler):
        raise TypeError
    n = weights.shape[0]
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n)
    scale = scaler.scale_ if scaler.with_std else np.ones(n)
    w = weights / scale[:, None]
    return w, bias - (mean / scale) @ weights


def dense(model: Any) -> Dense | None:
    """The head or regressor as dense layers, or None where it is not one (kNN, others)."""
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    scaler, last = model.steps[0][1], model.steps[1][1]
    if not isinstance(scaler, StandardScaler):
        return None
    if isinstance(last, LogisticRegression):
        if list(last.classes_) != [0, 1]:
            return None
        raw = [(np.asarray(last.coef_, np.float64).T, np.asarray(last.intercept_, np.float64))]
        hidden = None
    elif isinstance(last, MLPClassifier):
        if list(last.classes_) != [0, 1] or last.out_activation_ != "logistic":
            return None
        if last.activation not in HIDDEN_OPS:
            return None
        raw = [
            (np.asarray(w, np.float64), np.asarray(b, np.float64))
            for w, b in zip(last.coefs_, last.intercepts_, strict=True)
        ]
        hidden = HIDDEN_OPS[last.activation]
    elif isinstance(last, Ridge | LinearRegression):
        coef = np.asarray(last.coef_, np.float64)
        if coef.ndim != 1:
            return None
        raw = [(coef[:, None], np.atleast_1d(np.asarray(last.intercept_, np.float64)))]
        hidden = None
    else:
        return None
    first = _standardised(scaler, *raw[0])
    classifier = not isinstance(last, Ridge | LinearRegression)
    return Dense(((first[0], first[1]), *raw[1:]), hidden, classifier)


def logit(p: float) -> float:
    """The bias whose Sigmoid is p: how a constant head sits in a stacked classifier."""
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class Stack:
    """Several heads' layers side by side: `layers[i]` maps the stacked activations of layer
    i-1 to those of layer i; column j of the last layer is head j's output (pre-activation)."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    hidden: str | None


def stack(parts: list[Dense | float], n_features: int) -> Stack | None:
    """Stack heads (Dense) and constants (floats, the output's pre-activation value); None if
    the heads differ in depth or hidden activation."""
    heads = [p for p in parts if isinstance(p, Dense)]
    depth = heads[0].depth if heads else 1
    hidden = heads[0].hidden if heads else None
    if any(h.depth != depth or (depth > 1 and h.hidden != hidden) for h in heads):
        return None
    # A constant is a head of `depth` layers with no hidden units and its value as last bias.
    widths = [
        [p.layers[i][0].shape[1] for i in range(depth)]
        if isinstance(p, Dense)
        else [0] * (depth - 1) + [1]
        for p in parts
    ]
    layers = []
    for i in range(depth):
        rows = n_features if i == 0 else sum(w[i - 1] for w in widths)
        weights = np.zeros((rows, sum(w[i] for w in widths)))
        bias = np.zeros(weights.shape[1])
        r = c = 0
        for part, w in zip(parts, widths, strict=True):
            if isinstance(part, Dense):
                pw, pb = part.layers[i]
                if i == 0 and pw.shape[0] != n_features:
                    return None
                top = r if i else 0  # the first layer reads every feature
                weights[top : top + pw.shape[0], c : c + w[i]] = pw
                bias[c : c + w[i]] = pb
            elif i == depth - 1:
                bias[c] = part
            r += w[i - 1] if i else 0
            c += w[i]
        layers.append((weights, bias))
    return Stack(tuple(layers), hidden if depth > 1 else None)
