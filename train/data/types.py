"""The data layer's types: every source becomes the same table of per-tier outcomes.

A source reader (`train.data.readers`, `train.data.logs`) yields `RawRow`s (text, per-tier
quality and cost, NaN where unknown) or `RowProblem`s (file, line, reason);
`train.data.load` assembles them into a `Dataset`. This module imports no reader, so readers
depend on the types and never the other way round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from serve.model.errors import RungError
from serve.model.ladder import Ladder


class DataError(RungError):
    """Data that cannot be used at all; the message says what and where."""


class SourceFormat(str, Enum):
    LABELLED = "labelled"  # text + tier
    ROUTERBENCH = "routerbench"  # stringified prompt list, per-model score and cost columns
    ROUTELLM = "routellm"  # prompt + True/False per model
    LLMROUTER = "llmrouter"  # JSON list of {question, scores}
    LOGS = "logs"  # gateway escalation logs


@dataclass(frozen=True)
class RowProblem:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class RawRow:
    id: str
    text: str
    quality: list[float]  # per tier, 0..1, NaN = unknown
    cost: list[float]  # per tier, USD, NaN = unknown
    group: str = ""
    weight: float = 1.0
    time: str = ""
    line: int = 0


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str
    format: str
    rows: int
    bad_rows: int
    abs_path: str = ""  # where it was, resolved: `path` is as given, relative to the cwd


def pick_rows(items: list[Any], idx: np.ndarray) -> list[Any]:
    """The rows `idx` of a per-row list (the lists' side of a numpy `subset`)."""
    return [items[i] for i in idx]


def solved(quality: np.ndarray, pass_mark: float) -> np.ndarray:
    """Rows some tier is known to pass: what the ladder's `drop` policy keeps."""
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(quality, nan=-np.inf) >= pass_mark).any(axis=1)


@dataclass
class Dataset:
    """Rows with per-tier outcomes. `quality[i, t]` is tier t's score on row i (NaN unknown)."""

    ladder: Ladder
    ids: list[str]
    texts: list[str]
    quality: np.ndarray
    cost: np.ndarray
    groups: list[str]
    sources: list[str]
    weights: np.ndarray
    times: list[str]
    inputs: list[InputFile] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    dropped_unsolved: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def sufficient(self) -> np.ndarray:
        """1.0 / 0.0 / NaN: does tier t's answer pass the ladder's mark on row i."""
        with np.errstate(invalid="ignore"):
            out = (self.quality >= self.ladder.pass_mark).astype(float)
        out[np.isnan(self.quality)] = np.nan
        return out

    @property
    def labels(self) -> np.ndarray:
        """Cheapest known-sufficient tier; rows no tier passes get the top tier (policy `top`)."""
        suff = np.nan_to_num(self.sufficient, nan=0.0) > 0
        suff[:, -1] |= ~suff.any(axis=1)
        return suff.argmax(axis=1)

    def subset(self, mask: np.ndarray) -> Dataset:
        idx = np.flatnonzero(mask)
        pick = lambda xs: pick_rows(xs, idx)  # noqa: E731
        return Dataset(
            self.ladder,
            pick(self.ids),
            pick(self.texts),
            self.quality[idx],
            self.cost[idx],
            pick(self.groups),
            pick(self.sources),
            self.weights[idx],
            pick(self.times),
            self.inputs,
            self.problems,
            self.dropped_unsolved,
        )

    def rows_per_tier(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.ladder))
        return {n: int(c) for n, c in zip(self.ladder.names, counts, strict=True)}


def split_holdout(ids: list[str], folds: int = 5) -> np.ndarray:
    """True for held-out rows: a fixed hash of the id, so the split never drifts."""
    return np.array([int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % folds == 0 for i in ids])


@dataclass(frozen=True)
class TextRow:
    source: str
    id: str
    text: str


def fill_costs(ds: Dataset, token_counts: np.ndarray) -> np.ndarray:
    """Measured cost where the data has it, else the ladder's prices times tokens."""
    counts = np.asarray(token_counts, dtype=float)
    est = np.column_stack([t.estimate_cost(counts) for t in ds.ladder.tiers]).reshape(ds.cost.shape)
    cost = ds.cost.copy()
    missing = np.isnan(cost)
    cost[missing] = est[missing]
    return cost
