"""The data layer: every source becomes the same table of per-tier outcomes.

A source reader yields `RawRow`s (text, per-tier quality and cost, NaN where unknown) or
`RowProblem`s (file, line, reason). `load_dataset` validates, applies the ladder's policy and
returns a `Dataset`. New sources (escalation logs) register a reader in `READERS`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from serve.bundle import sha256_file
from serve.errors import RungError
from serve.ladder import Ladder, UnsolvedPolicy

csv.field_size_limit(1 << 30)
DATA_SUFFIXES = (".jsonl", ".csv", ".json")


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
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
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


# ---------------------------------------------------------------- format detection


def expand_paths(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in DATA_SUFFIXES and f.is_file())
            if not found:
                raise DataError(f"{p}: folder holds no .jsonl, .csv or .json files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"data file not found: {p}")
    return out


def json_lines(path: Path) -> Iterator[tuple[int, Any] | RowProblem]:
    """(line number, parsed value) for every non-blank JSONL line; a RowProblem for a line
    that is not JSON, so readers report it with its line and go on."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowProblem(str(path), lineno, f"invalid JSON: {exc.msg}")


def detect_format(path: Path) -> SourceFormat:
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096)
    if not head.strip():
        raise DataError(f"{path}: file is empty")
    if path.suffix == ".csv":
        header = next(csv.reader([head.splitlines()[0]]))
        if "text" in header and "tier" in header:
            return SourceFormat.LABELLED
        if "prompt" in header and ("sample_id" in header or "eval_name" in header):
            return SourceFormat.ROUTERBENCH
        if "prompt" in header:
            return SourceFormat.ROUTELLM
        raise DataError(f"{path}: CSV header {header[:6]} is not a known layout")
    if path.suffix == ".json" or head.lstrip().startswith("["):
        return SourceFormat.LLMROUTER
    obj = _first_json_object(path)
    if obj is None:
        raise DataError(f"{path}: none of the first lines is a JSON object; pass --format")
    if "attempts" in obj or "request_id" in obj:
        return SourceFormat.LOGS
    return SourceFormat.LABELLED


def _first_json_object(path: Path, lines: int = 50) -> dict[str, Any] | None:
    """The first parsable object line: a bad first line is the reader's to report, not a
    reason to misjudge the whole file (and lines may be longer than any fixed peek)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for _, line in zip(range(lines), fh, strict=False):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


# ---------------------------------------------------------------- readers

Reader = Callable[[Path, Ladder], Iterator[RawRow | RowProblem]]
READERS: dict[SourceFormat, Reader] = {}


def reader(fmt: SourceFormat) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[fmt] = fn
        return fn

    return register


# ---------------------------------------------------------------- loading


def load_dataset(
    paths: list[str | Path],
    ladder: Ladder,
    fmt: SourceFormat | None = None,
    apply_policy: bool = True,
) -> Dataset:
    """Read every file, keep good rows, count and report bad ones; refuse if none is usable."""
    rows: list[RawRow] = []
    sources: list[str] = []
    problems: list[RowProblem] = []
    inputs: list[InputFile] = []
    for path in expand_paths(paths):
        kind = fmt or detect_format(path)
        good_before, bad_before = len(rows), len(problems)
        for item in READERS[kind](path, ladder):
            if isinstance(item, RowProblem):
                problems.append(item)
            else:
                rows.append(item)
                sources.append(str(path))
        inputs.append(
            InputFile(
                str(path),
                sha256_file(path),
                kind.value,
                len(rows) - good_before,
                len(problems) - bad_before,
                str(path.resolve()),
            )
        )
    return _assemble(rows, sources, problems, inputs, ladder, apply_policy)


def _assemble(
    rows: list[RawRow],
    sources: list[str],
    problems: list[RowProblem],
    inputs: list[InputFile],
    ladder: Ladder,
    apply_policy: bool,
) -> Dataset:
    if not rows:
        detail = "; ".join(map(str, problems[:5]))
        raise DataError(
            f"no usable rows in {[i.path for i in inputs]}"
            + (f" ({len(problems)} bad rows, e.g. {detail})" if problems else "")
        )
    quality = np.array([r.quality for r in rows], dtype=float)
    ds = Dataset(
        ladder,
        [r.id for r in rows],
        [r.text for r in rows],
        quality,
        np.array([r.cost for r in rows], dtype=float),
        [r.group for r in rows],
        sources,
        np.array([r.weight for r in rows], dtype=float),
        [r.time for r in rows],
        inputs,
        problems,
    )
    if apply_policy and ladder.unsolved is UnsolvedPolicy.DROP:
        solved = (np.nan_to_num(ds.sufficient, nan=0.0) > 0).any(axis=1)
        dropped = int((~solved).sum())
        ds = ds.subset(solved)
        ds.dropped_unsolved = dropped
        if not len(ds):
            raise DataError("every row is unsolved and the ladder's policy is 'drop'")
    return ds


def split_holdout(ids: list[str], folds: int = 5) -> np.ndarray:
    """True for held-out rows: a fixed hash of the id, so the split never drifts."""
    return np.array([int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % folds == 0 for i in ids])


@dataclass(frozen=True)
class TextRow:
    source: str
    id: str
    text: str


def read_texts(
    paths: list[str | Path], ladder: Ladder, fmt: SourceFormat | None = None
) -> tuple[list[TextRow], list[RowProblem]]:
    """Texts to route, with their ids; labels are optional here (prediction, not training)."""
    rows: list[TextRow] = []
    problems: list[RowProblem] = []
    for path in expand_paths(paths):
        kind = fmt or detect_format(path)
        items = (
            unlabelled_rows(path) if kind is SourceFormat.LABELLED else READERS[kind](path, ladder)
        )
        for item in items:
            if isinstance(item, RowProblem):
                problems.append(item)
            else:
                rows.append(TextRow(str(path), item.id, item.text))
    if not rows:
        raise DataError(
            f"no usable rows in {list(map(str, paths))}"
            + (f"; e.g. {problems[0]}" if problems else "")
        )
    return rows, problems


# Readers register themselves in READERS on import; they need the names above.
import train.logs  # noqa: E402, F401  (escalation logs: SourceFormat.LOGS)
from train.readers import unlabelled_rows  # noqa: E402
