"""Loading: every file through the reader for its layout, into one validated `Dataset`.

The reader table is explicit: a new source layout is a reader module plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from serve.model.bundle import sha256_file
from serve.model.ladder import Ladder, UnsolvedPolicy
from train.data.files import detect_format, expand_paths
from train.data.logs import read_logs
from train.data.prompts import PROMPT_READERS
from train.data.readers import (
    read_labelled,
    read_llmrouter,
    read_routellm,
    read_routerbench,
)
from train.data.types import (
    DataError,
    Dataset,
    InputFile,
    RawRow,
    RowProblem,
    SourceFormat,
    TextRow,
    solved,
)

Reader = Callable[[Path, Ladder], Iterator[RawRow | RowProblem]]
READERS: dict[SourceFormat, Reader] = {
    SourceFormat.LABELLED: read_labelled,
    SourceFormat.ROUTERBENCH: read_routerbench,
    SourceFormat.ROUTELLM: read_routellm,
    SourceFormat.LLMROUTER: read_llmrouter,
    SourceFormat.LOGS: read_logs,
}


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
        keep = solved(ds.quality, ladder.pass_mark)
        dropped = int((~keep).sum())
        ds = ds.subset(keep)
        ds.dropped_unsolved = dropped
        if not len(ds):
            raise DataError("every row is unsolved and the ladder's policy is 'drop'")
    return ds


def iter_texts(
    paths: list[str | Path], fmt: SourceFormat | None = None
) -> Iterator[TextRow | RowProblem]:
    """Texts to route, with their ids, from any layout, one row at a time: memory stays flat
    in the number of rows (except LLMRouter's single JSON list, which is one document).
    Outcomes are ignored: the file's models need not be the bundle's ladder."""
    for path in expand_paths(paths):
        kind, source = fmt or detect_format(path), str(path)
        for item in PROMPT_READERS[kind](path):
            yield item if isinstance(item, RowProblem) else TextRow(source, *item)


def read_texts(
    paths: list[str | Path], fmt: SourceFormat | None = None
) -> tuple[list[TextRow], list[RowProblem]]:
    """All of :func:`iter_texts` in lists; refuses when no row is usable."""
    rows: list[TextRow] = []
    problems: list[RowProblem] = []
    for item in iter_texts(paths, fmt):
        (problems if isinstance(item, RowProblem) else rows).append(item)  # type: ignore[arg-type]
    if not rows:
        raise DataError(no_rows_message(paths, problems))
    return rows, problems


def no_rows_message(paths: list[str | Path], problems: list[RowProblem]) -> str:
    return f"no usable rows in {list(map(str, paths))}" + (
        f"; e.g. {problems[0]}" if problems else ""
    )
