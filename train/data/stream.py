"""Rows with their outcomes, batch by batch: what `load_dataset` reads, never all at once.

Scoring commands (`rung eval`) walk a table once and keep only compact per-row figures, so
their memory does not hold every text. The rows, the bad-row accounting, the input-file
records and the ladder's unsolved policy are those of `load_dataset`; the difference is that
only a few bad-row examples are kept (with their count), not every one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serve.model.bundle import sha256_file
from serve.model.ladder import Ladder, UnsolvedPolicy
from train.data.files import detect_format, expand_paths
from train.data.load import READERS
from train.data.types import (
    DataError,
    Dataset,
    InputFile,
    RawRow,
    RowProblem,
    SourceFormat,
    pick_rows,
    solved,
)

BATCH = 4096  # rows per batch: texts of one batch at a time
KEEP_PROBLEMS = 10  # bad-row examples kept; the rest are only counted
HASH_CHUNK = 1 << 16  # bytes read at a time to hash an input (as fast as 1 MB, 16x less held)


@dataclass
class RowBatch:
    """Consecutive usable rows: quality and cost are [rows, tiers] float64, NaN unknown."""

    ids: list[str]
    texts: list[str]
    quality: np.ndarray
    cost: np.ndarray
    groups: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, mask: np.ndarray) -> RowBatch:
        idx = np.flatnonzero(mask)
        pick = lambda xs: pick_rows(xs, idx)  # noqa: E731
        return RowBatch(
            pick(self.ids),
            pick(self.texts),
            self.quality[idx],
            self.cost[idx],
            pick(self.groups),
            pick(self.sources),
        )


@dataclass
class RowStream:
    """Iterate once for `RowBatch`es; afterwards `inputs`, `bad_rows`, `problems` (the first
    `KEEP_PROBLEMS`) and `dropped_unsolved` describe the whole read. Refuses, as
    `load_dataset` does, when no row is usable or the `drop` policy leaves none."""

    paths: list[str | Path]
    ladder: Ladder
    fmt: SourceFormat | None = None
    batch: int = BATCH
    apply_policy: bool = True
    inputs: list[InputFile] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    bad_rows: int = 0
    rows_read: int = 0
    dropped_unsolved: int = 0

    def __iter__(self) -> Iterator[RowBatch]:
        if self.batch < 1:
            raise ValueError("batch must be >= 1")
        pending: list[tuple[RawRow, str]] = []
        for path in expand_paths(self.paths):
            kind = self.fmt or detect_format(path)
            good_before, bad_before = self.rows_read, self.bad_rows
            for item in READERS[kind](path, self.ladder):
                if isinstance(item, RowProblem):
                    self.bad_rows += 1
                    if len(self.problems) < KEEP_PROBLEMS:
                        self.problems.append(item)
                    continue
                self.rows_read += 1
                pending.append((item, str(path)))
                if len(pending) >= self.batch:
                    yield from self._emit(pending)
                    pending = []
            self.inputs.append(
                InputFile(
                    str(path),
                    sha256_file(path, HASH_CHUNK),
                    kind.value,
                    self.rows_read - good_before,
                    self.bad_rows - bad_before,
                    str(path.resolve()),
                )
            )
        yield from self._emit(pending)
        self._check()

    def _emit(self, pending: list[tuple[RawRow, str]]) -> Iterator[RowBatch]:
        if not pending:
            return
        out = RowBatch(
            [r.id for r, _ in pending],
            [r.text for r, _ in pending],
            np.array([r.quality for r, _ in pending], dtype=float),
            np.array([r.cost for r, _ in pending], dtype=float),
            [r.group for r, _ in pending],
            [s for _, s in pending],
        )
        if self.apply_policy and self.ladder.unsolved is UnsolvedPolicy.DROP:
            keep = solved(out.quality, self.ladder.pass_mark)
            self.dropped_unsolved += int((~keep).sum())
            out = out.subset(keep)
        if len(out):
            yield out

    def _check(self) -> None:
        if not self.rows_read:
            detail = "; ".join(map(str, self.problems[:5]))
            raise DataError(
                f"no usable rows in {[i.path for i in self.inputs]}"
                + (f" ({self.bad_rows} bad rows, e.g. {detail})" if self.bad_rows else "")
            )
        if self.rows_read == self.dropped_unsolved:
            raise DataError("every row is unsolved and the ladder's policy is 'drop'")


@dataclass
class DatasetStream:
    """A loaded `Dataset` walked in the same batches (the API accepts one)."""

    dataset: Dataset
    batch: int = BATCH

    @property
    def inputs(self) -> list[InputFile]:
        return self.dataset.inputs

    @property
    def problems(self) -> list[RowProblem]:
        return self.dataset.problems[:KEEP_PROBLEMS]

    @property
    def bad_rows(self) -> int:
        return len(self.dataset.problems)

    @property
    def dropped_unsolved(self) -> int:
        return self.dataset.dropped_unsolved

    def __iter__(self) -> Iterator[RowBatch]:
        ds = self.dataset
        for start in range(0, len(ds), self.batch):
            stop = start + self.batch
            yield RowBatch(
                ds.ids[start:stop],
                ds.texts[start:stop],
                ds.quality[start:stop],
                ds.cost[start:stop],
                ds.groups[start:stop],
                ds.sources[start:stop],
            )
