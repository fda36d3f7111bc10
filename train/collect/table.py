"""The outcome table: RouterBench layout, so `rung train` and `rung eval` read it as they are.

One row per prompt: `sample_id` (the prompt's id), `prompt` (a stringified list holding the
text rung classifies, as RouterBench stores it), `eval_name` (the family), then per tier's model
column: the score, `<model>|total_cost`, `<model>|latency_ms`, token counts and the answer. A
blank cell is unknown: a failed call, an unscorable answer, or (cascade) a tier never asked.
Written to a temporary file and renamed, so a reader never sees half a table.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from serve.model.ladder import Ladder
from train.collect.journal import Journal, Record
from train.collect.prompts import Prompt

FIELDS = ("total_cost", "latency_ms", "input_tokens", "output_tokens", "model_response")


def header(ladder: Ladder) -> list[str]:
    cols = ["sample_id", "prompt", "eval_name"]
    for t in ladder.tiers:
        cols += [t.model, *(f"{t.model}|{f}" for f in FIELDS)]
    return cols


def _cells(rec: Record | None) -> list[Any]:
    if rec is None:
        return [""] * (1 + len(FIELDS))
    return [
        "" if rec.score is None else f"{rec.score:.6g}",
        "" if rec.cost_usd is None else repr(float(rec.cost_usd)),
        "" if rec.latency_ms is None else f"{rec.latency_ms:.3f}",
        rec.input_tokens if rec.answered else "",
        rec.output_tokens if rec.answered else "",
        rec.answer if rec.answer is not None else "",
    ]


def pair_records(
    prompts: list[Prompt], ladder: Ladder, journal: Journal
) -> list[list[Record | None]]:
    """Per prompt, per tier: the journal's record for this very prompt and model, or None."""
    return [
        [journal.find(p.id, t.name, t.litellm_model, p.digest) for t in ladder.tiers]
        for p in prompts
    ]


def write_table(
    path: Path, prompts: list[Prompt], ladder: Ladder, records: list[list[Record | None]]
) -> int:
    """Rows for every prompt with at least one record; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    written = 0
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header(ladder))
        for prompt, recs in zip(prompts, records, strict=True):
            if all(r is None for r in recs):
                continue
            row: list[Any] = [prompt.id, repr([prompt.text]), prompt.family]
            for rec in recs:
                row += _cells(rec)
            out.writerow(row)
            written += 1
    os.replace(tmp, path)
    return written
