"""Batch prediction with a bundle, through the serving runtime (what production would do).

Rows stream from the input to the output in batches, so memory stays flat however many rows
the files hold; the output appears atomically when every row is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from serve.model.runtime import Router, decide
from train.data.load import iter_texts, no_rows_message
from train.data.types import DataError, RowProblem, SourceFormat, TextRow

BATCH = 4096
MAX_PRINTED_PROBLEMS = 20


def predict_files(
    model: Path, data: list[str], out: Path, threshold: float | None = None, fmt: str | None = None
) -> int:
    router = Router.load(model)
    tau = router.manifest.threshold if threshold is None else threshold
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {tau}")
    problems: list[RowProblem] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    written = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for chunk in _batches(iter_texts(data, SourceFormat(fmt) if fmt else None), problems):
                fh.write(_records(router, chunk, tau, with_source=len(data) > 1))
                written += len(chunk)
        if not written:
            raise DataError(no_rows_message(list(data), problems))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for problem in problems[:MAX_PRINTED_PROBLEMS]:
        print(f"skipped {problem}")
    if len(problems) > MAX_PRINTED_PROBLEMS:
        print(f"... and {len(problems) - MAX_PRINTED_PROBLEMS} more bad rows")
    tmp.replace(out)
    return written


def _batches(
    items: Iterator[TextRow | RowProblem], problems: list[RowProblem]
) -> Iterator[list[TextRow]]:
    chunk: list[TextRow] = []
    for item in items:
        if isinstance(item, RowProblem):
            problems.append(item)
            continue
        chunk.append(item)
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _records(router: Router, chunk: list[TextRow], tau: float, with_source: bool) -> str:
    names = router.tier_names
    p = router.p_sufficient([r.text for r in chunk])
    tiers = decide(p, tau).tolist()
    lines = []
    for row, probs, tier in zip(chunk, p.round(6).tolist(), tiers, strict=True):
        record = {
            "id": _id(row.id),
            "tier": names[tier],
            "p_sufficient": dict(zip(names, probs, strict=True)),
        }
        if with_source:
            record["source"] = row.source
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def _id(raw: str) -> int | str:
    return int(raw) if raw.isdigit() and str(int(raw)) == raw else raw
