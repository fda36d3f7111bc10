"""The evaluation API: score one bundle, or several side by side, on the same rows.

`evaluate(model, data)` loads a bundle (through the serving runtime, so the figures are what
production would do), reads outcome tables or labelled queries once, batch by batch, fills
per-row costs and returns an `EvalResult` whose `to_dict()` is report.json. `compare(models,
data)` scores every model on exactly the same rows with exactly the same costs, in the same
pass (the retraining gate uses it). Memory holds one batch of texts and a few bytes per row
(rowpass.py, accumulate.py); docs/scaling.md has the measured figures.

Cost convention: a row's cost for a tier is the measured `<model>|total_cost` when the data has
it, else the evaluation ladder's prices x tokens: input tokens are the bundle tokenizer's
content tokens (no special tokens, no truncation), output tokens are the tier's
`output_tokens` (default 300), prices are USD per 1M tokens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.errors import RungError
from serve.model.ladder import Ladder
from serve.model.policy import Rule
from serve.model.runtime import Router
from train.data.stream import BATCH
from train.data.types import Dataset, SourceFormat
from train.evaluation.accumulate import ModelTally, Outcomes
from train.evaluation.rowpass import (
    SPLIT_RULES,
    EvalError,
    PassResult,
    Scored,
    Split,
    open_rows,
    rule_curve,
    run_pass,
    seen_ids,
)
from train.evaluation.scoring import QUALITY_TARGETS, score_tallies

__all__ = ["BATCH", "SPLIT_RULES", "EvalError", "EvalResult", "Split", "compare", "evaluate"]

SCHEMA = "rung-eval/1"
COMPARE_SCHEMA = "rung-eval-compare/1"
GROUP_FIELD = {
    "labelled": "family",
    "routerbench": "eval_name",
    "routellm": "file name",
    "llmrouter": "cluster_id",
    "logs": "group",
}


@dataclass
class EvalResult:
    """One model's evaluation; `to_dict()` is report.json (schema in docs/evaluation.md)."""

    model: dict[str, Any]
    data: dict[str, Any]
    ladder: Ladder
    metrics: dict[str, Any]

    @property
    def tier_names(self) -> list[str]:
        return self.ladder.names

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created_at": _now(),
            "model": self.model,
            "data": self.data,
            "ladder": self.ladder.to_dict(),
            "tiers": self.tier_names,
            **self.metrics,
        }

    def summary(self) -> dict[str, Any]:
        """The figures a promotion gate compares: envelope, cost to reach 90/95/100% of top
        quality (and saving vs random mixing), ECE, quality / cost at the default threshold."""
        mt, d = self.metrics, self.metrics["default"]
        out: dict[str, Any] = {
            "model": self.model["label"],
            "version": self.model["version"],
            "rows": self.data["rows"],
            "threshold": d["threshold"],
            "quality": d["quality"],
            "cost_usd": d["cost_usd"],
            "quality_share_of_top": d["quality_share_of_top"],
            "cost_share_of_top": d["cost_share_of_top"],
            "auc": mt["auc"]["router"],
            "auc_random": mt["auc"]["random"],
            "auc_heuristic": mt["auc"]["heuristic"],
            "auc_oracle": mt["auc"]["oracle"],
            "gap_closed": mt["gap_closed"],
            "mean_ece": mt["mean_ece"],
            "ece": {t: c["ece"] for t, c in mt["calibration"].items()},
            "envelope": mt["envelopes"]["router"],
        }
        for target in mt["targets"]:
            pct = round(target["share_of_top_quality"] * 100)
            out[f"cost_to_{pct}"] = target["cost"]["router"]
            out[f"saving_vs_random_{pct}"] = target["saving_vs_random_share"]
        return out


@dataclass
class Comparison:
    """Several models scored on the same rows with the same costs."""

    results: list[EvalResult]
    data: dict[str, Any]
    gate: list[dict[str, str]]  # each later model judged against the first, as `rung retrain`

    def summary(self) -> list[dict[str, Any]]:
        return [r.summary() for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COMPARE_SCHEMA,
            "created_at": _now(),
            "data": self.data,
            "models": self.summary(),
            "gate": self.gate,
            "reports": [r.to_dict() for r in self.results],
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------- inputs


def load_router(model: str | Path | Router) -> Router:
    return model if isinstance(model, Router) else Router.load(model)


def check_ladder(ladder: Ladder, router: Router) -> None:
    if ladder.names != router.tier_names:
        raise EvalError(
            f"the evaluation ladder's tiers {ladder.names} differ from the model's "
            f"{router.tier_names} ({router.manifest.version}); use a ladder with "
            "the same tier names"
        )


def _scored(
    router: Router, outcomes: Outcomes, threshold: float | None, quality: float | None
) -> tuple[Scored, Any, float]:
    """The model's place in the pass, the setting its report names, and its threshold."""
    if threshold is not None and quality is not None:
        raise EvalError("give quality or threshold, not both")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise EvalError(f"threshold must lie in [0, 1], got {threshold}")
    try:
        setting = router.setting(quality, threshold)
        curve_setting, curve = rule_curve(router, quality)
    except RungError as exc:
        raise EvalError(str(exc)) from None
    if threshold is not None:
        curve_setting, curve = setting, None
    tau = setting.value if setting.rule is Rule.THRESHOLD else router.manifest.threshold
    return Scored(router, curve_setting, ModelTally(outcomes, tau, curve)), setting, tau


def _data_info(done: PassResult, split: Split, cost_info: dict[str, Any]) -> dict[str, Any]:
    rows = done.rows
    formats = sorted({i.format for i in rows.inputs})
    return {
        "inputs": [dataclasses.asdict(i) for i in rows.inputs],
        "rows": done.outcomes.rows,
        "split": split.value,
        "split_rule": SPLIT_RULES[split],
        "bad_rows": rows.bad_rows,
        "bad_row_examples": [str(p) for p in rows.problems[:10]],
        "dropped_unsolved": rows.dropped_unsolved,
        "group_field": {f: GROUP_FIELD.get(f, "group") for f in formats},
        "pass_mark": done.outcomes.pass_mark,
        "cost": cost_info,
        "quality_targets": list(QUALITY_TARGETS),
    }


def _model_info(router: Router, label: str, threshold: float, setting: Any) -> dict[str, Any]:
    mf = router.manifest
    return {
        "label": label,
        "path": str(router.root),
        "name": mf.name,
        "version": mf.version,
        "schema_version": mf.schema_version,
        "rule": setting.rule.value,
        "setting": setting.value,
        "quality_setting": setting.quality,
        "threshold": threshold,
        "manifest_threshold": mf.threshold,
        "embedder": mf.embedder.kind.value,
        "ladder_tiers": mf.ladder.names,
    }


def _result(
    scored: Scored, setting: Any, tau: float, done: PassResult, split: Split, label: str
) -> EvalResult:
    return EvalResult(
        model=_model_info(scored.router, label, tau, setting),
        data=_data_info(done, split, done.cost_info),
        ladder=done.ladder,
        metrics=score_tallies(scored.tally),
    )


# ---------------------------------------------------------------- API


def evaluate(
    model: str | Path | Router,
    data: Sequence[str | Path] | Dataset,
    ladder: Ladder | None = None,
    fmt: SourceFormat | str | None = None,
    split: Split | str = Split.ALL,
    threshold: float | None = None,
    costs: np.ndarray | None = None,
    label: str | None = None,
    quality: float | None = None,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Score one bundle. `ladder` defaults to the bundle's manifest ladder and must have its
    tier names; the default operating point is the bundle's own (its rule at its calibrated
    setting), or the threshold rule at `threshold`, or the bundle's rule at the `quality`
    knob; `costs` ([n, K] USD, rows after the split) skips estimation; `batch` rows are read,
    embedded and scored at a time, and `progress(n)` hears of each batch's rows read."""
    router = load_router(model)
    eval_ladder = ladder or router.manifest.ladder
    check_ladder(eval_ladder, router)
    split = Split(split)
    rows = open_rows(data, eval_ladder, fmt, batch)
    outcomes = Outcomes(eval_ladder.names, eval_ladder.pass_mark)
    scored, setting, tau = _scored(router, outcomes, threshold, quality)
    seen = seen_ids(split, [router])
    done = run_pass(rows, eval_ladder, split, seen, [scored], costs, progress)
    name = label or (str(model) if not isinstance(model, Router) else router.manifest.version)
    return _result(scored, setting, tau, done, split, name)


def compare(
    models: Sequence[str | Path | Router],
    data: Sequence[str | Path] | Dataset,
    ladder: Ladder | None = None,
    fmt: SourceFormat | str | None = None,
    split: Split | str = Split.ALL,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> Comparison:
    """Score every model on the same rows and costs, in one pass over the data. The ladder
    defaults to the first model's; every model must share its tier names. Costs are
    estimated once, with the first model's tokenizer, so a cheaper tokenizer cannot make a
    model look cheaper."""
    if len(models) < 2:
        raise EvalError("compare needs two or more models")
    routers = [load_router(x) for x in models]
    eval_ladder = ladder or routers[0].manifest.ladder
    for router in routers:
        check_ladder(eval_ladder, router)
    split = Split(split)
    rows = open_rows(data, eval_ladder, fmt, batch)
    outcomes = Outcomes(eval_ladder.names, eval_ladder.pass_mark)
    prepared = [_scored(r, outcomes, None, None) for r in routers]
    scored = [s for s, _, _ in prepared]
    done = run_pass(rows, eval_ladder, split, seen_ids(split, routers), scored, None, progress)
    labels = _labels(models, routers)
    results = [
        _result(s, setting, tau, done, split, label)
        for (s, setting, tau), label in zip(prepared, labels, strict=True)
    ]
    gate = gate_verdicts(scored, labels, outcomes)
    return Comparison(results=results, data=results[0].data, gate=gate)


def gate_verdicts(
    scored: list[Scored], labels: list[str], outcomes: Outcomes
) -> list[dict[str, str]]:
    """The promotion gate's verdict (train/gate.py, the rule `rung retrain --promote` applies)
    for every model after the first, judged as a candidate against the first. The gate's
    sweep takes whole arrays: they are built here from the pass's compact per-row figures."""
    from train.evaluation.gate import figures, judge

    quality = np.concatenate(outcomes.quality).astype(float)
    costs = np.concatenate(outcomes.cost)

    def fig(s: Scored):  # noqa: ANN202 - gate.Figures, imported lazily
        low = np.concatenate(s.tally.p_low).astype(float)
        p = np.column_stack([low, np.ones(len(low))])
        return figures(p, quality, costs, s.router.manifest.threshold, outcomes.pass_mark)

    base = fig(scored[0])
    out = []
    for s, label in zip(scored[1:], labels[1:], strict=True):
        decision = judge(fig(s), base)
        out.append(
            {
                "candidate": label,
                "base": labels[0],
                "verdict": decision.verdict.value,
                "reason": decision.reason,
            }
        )
    return out


def _labels(models: Sequence[str | Path | Router], routers: list[Router]) -> list[str]:
    labels = [
        str(x) if not isinstance(x, Router) else r.manifest.version
        for x, r in zip(models, routers, strict=True)
    ]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}:{lab}" for i, lab in enumerate(labels)]
    return labels
