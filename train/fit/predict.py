"""Batch prediction with a bundle, through the serving runtime (what production would do).

With `sweep=N`, every row also gets the tier chosen at N settings of the bundle's knob, from
cheapest to best (the same settings for every row: N quality values mapped through the
bundle's calibration table, or N thresholds from 0 to 1 for bundles without one), so any
evaluator can trace the cost-quality curve of the decision rule as served. The settings are
written beside the predictions in `<out>.sweep.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from serve.model.policy import PolicyError
from serve.model.runtime import Router, Setting
from train.data.load import read_texts
from train.data.types import SourceFormat

BATCH = 512
MAX_SWEEP = 1000


class PredictError(PolicyError):
    """Options that cannot be applied to this bundle; the message says why."""


def sweep_path(out: Path) -> Path:
    return out.with_name(out.name + ".sweep.json")


def predict_files(
    model: Path,
    data: list[str],
    out: Path,
    threshold: float | None = None,
    fmt: str | None = None,
    quality: float | None = None,
    sweep: int = 0,
) -> int:
    router = Router.load(model)
    setting = router.setting(quality, threshold)
    if not 0 <= sweep <= MAX_SWEEP:
        raise PredictError(f"--sweep must lie in 0..{MAX_SWEEP}, got {sweep}")
    knob = router.knob_settings(sweep) if sweep else []
    rows, problems = read_texts(data, SourceFormat(fmt) if fmt else None)
    for problem in problems:
        print(f"skipped {problem}")
    names = router.tier_names
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            est = router.estimates([r.text for r in chunk])
            tiers = router.decide(est, setting)
            swept = np.column_stack([router.decide(est, s) for s in knob]) if knob else None
            for i, row in enumerate(chunk):
                record = {
                    "id": _id(row.id),
                    "tier": names[tiers[i]],
                    "p_sufficient": _probs(names, est.p_sufficient[i]),
                    "cost_usd": float(est.cost[i, tiers[i]]),
                }
                if est.p_correct is not None:
                    record["p_correct"] = _probs(names, est.p_correct[i])
                if swept is not None:
                    record["sweep"] = [names[t] for t in swept[i]]
                if len(data) > 1:
                    record["source"] = row.source
                fh.write(json.dumps(record) + "\n")
    tmp.replace(out)
    if knob:
        sweep_path(out).write_text(json.dumps(_sweep_doc(setting, knob), indent=1) + "\n")
    return len(rows)


def _sweep_doc(default: Setting, knob: list[Setting]) -> dict:
    return {
        "order": "cheapest to best; row i of `sweep` in the predictions is the tier at setting i",
        "rule": knob[0].rule.value,
        "knob": "quality" if knob[0].quality is not None else "threshold",
        "settings": [{**asdict(s), "rule": s.rule.value} for s in knob],
        "default": {**asdict(default), "rule": default.rule.value},
    }


def _probs(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {n: round(float(v), 6) for n, v in zip(names, values, strict=True)}


def _id(raw: str) -> int | str:
    return int(raw) if raw.isdigit() and str(int(raw)) == raw else raw
