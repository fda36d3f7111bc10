"""Batch prediction with a bundle, through the serving runtime (what production would do)."""

from __future__ import annotations

import json
from pathlib import Path

from serve.model.runtime import Router, decide
from train.data.load import read_texts
from train.data.types import SourceFormat

BATCH = 512


def predict_files(
    model: Path, data: list[str], out: Path, threshold: float | None = None, fmt: str | None = None
) -> int:
    router = Router.load(model)
    tau = router.manifest.threshold if threshold is None else threshold
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {tau}")
    rows, problems = read_texts(data, SourceFormat(fmt) if fmt else None)
    for problem in problems:
        print(f"skipped {problem}")
    names = router.tier_names
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            p = router.p_sufficient([r.text for r in chunk])
            for row, probs, tier in zip(chunk, p, decide(p, tau), strict=True):
                record = {
                    "id": _id(row.id),
                    "tier": names[tier],
                    "p_sufficient": {
                        n: round(float(v), 6) for n, v in zip(names, probs, strict=True)
                    },
                }
                if len(data) > 1:
                    record["source"] = row.source
                fh.write(json.dumps(record) + "\n")
    tmp.replace(out)
    return len(rows)


def _id(raw: str) -> int | str:
    return int(raw) if raw.isdigit() and str(int(raw)) == raw else raw
