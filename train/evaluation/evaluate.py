"""The evaluation API: score one bundle, or several side by side, on the same rows.

`evaluate(model, data)` loads a bundle (through the serving runtime, so the figures are what
production would do), reads outcome tables or labelled queries, fills per-row costs and returns
an `EvalResult` whose `to_dict()` is report.json. `compare(models, data)` scores every model on
exactly the same rows with exactly the same costs (the retraining gate uses it).

Cost convention: a row's cost for a tier is the measured `<model>|total_cost` when the data has
it, else the evaluation ladder's prices x tokens: input tokens are the bundle tokenizer's
content tokens (no special tokens, no truncation), output tokens are the tier's
`output_tokens` (default 300), prices are USD per 1M tokens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.errors import RungError
from serve.model.ladder import Ladder
from serve.model.policy import Rule
from serve.model.runtime import Estimates, Router
from train.data.load import load_dataset
from train.data.types import Dataset, SourceFormat, fill_costs, split_holdout
from train.evaluation.baselines import heuristic_decisions
from train.evaluation.scoring import QUALITY_TARGETS, EvalInputs, RuleCurve, score

SCHEMA = "rung-eval/1"
COMPARE_SCHEMA = "rung-eval-compare/1"
BATCH = 4096  # rows per batch: bounded memory for tokens and features
GROUP_FIELD = {
    "labelled": "family",
    "routerbench": "eval_name",
    "routellm": "file name",
    "llmrouter": "cluster_id",
    "logs": "group",
}


class EvalError(RungError):
    """Evaluation cannot run on these inputs; the message says why."""


class Split(str, Enum):
    ALL = "all"  # every row
    HOLDOUT = "holdout"  # the fixed hash split rung train holds out: sha256(id) % 5 == 0
    TRAIN = "train"  # the complement of holdout
    UNSEEN = "unseen"  # rows whose id no evaluated bundle trained on (training/train_ids.json)


SPLIT_RULES = {
    Split.ALL: "every row",
    Split.HOLDOUT: "held-out hash split: int(sha256(id)[:8], 16) % 5 == 0 (never trained on "
    "by rung train)",
    Split.TRAIN: "training side of the hash split: int(sha256(id)[:8], 16) % 5 != 0",
    Split.UNSEEN: "rows whose id is in no evaluated bundle's training/train_ids.json",
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


def train_ids(router: Router) -> set[str]:
    path = router.root / "training" / "train_ids.json"
    try:
        return set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        raise EvalError(
            f"{router.root}: no readable training/train_ids.json, so --split "
            "unseen cannot tell which rows it trained on"
        ) from None


def select_split(ds: Dataset, split: Split, routers: Sequence[Router] = ()) -> Dataset:
    if split is Split.ALL:
        return ds
    if split is Split.UNSEEN:
        seen = set().union(*(train_ids(r) for r in routers))
        mask = np.array([i not in seen for i in ds.ids], dtype=bool)
    else:
        held = split_holdout(ds.ids)
        mask = held if split is Split.HOLDOUT else ~held
    out = ds.subset(mask)
    if not len(out):
        raise EvalError(
            f"no overlapping rows: none of the {len(ds)} rows is in split "
            f"'{split.value}' ({SPLIT_RULES[split]})"
        )
    return out


def load_rows(
    data: Sequence[str | Path] | Dataset, ladder: Ladder, fmt: SourceFormat | str | None = None
) -> Dataset:
    """Outcome tables or labelled queries under the evaluation ladder; an existing Dataset is
    re-labelled with the ladder (its prices drive cost estimates)."""
    if isinstance(data, Dataset):
        if data.ladder.names != ladder.names:
            raise EvalError(f"dataset tiers {data.ladder.names} differ from {ladder.names}")
        return dataclasses.replace(data, ladder=ladder)
    if isinstance(data, str | Path):
        data = [data]
    if not data:
        raise EvalError("no data given")
    return load_dataset(list(data), ladder, SourceFormat(fmt) if fmt else None)


def token_counts(router: Router, texts: list[str]) -> np.ndarray:
    """Content tokens per text with the bundle's tokenizer, without serving's truncation."""
    from tokenizers import Tokenizer

    tok = getattr(router.embedder, "tokenizer", None)
    if tok is None:
        raise EvalError("the bundle's embedder exposes no tokenizer to count input tokens")
    counter = Tokenizer.from_str(tok.to_str())
    counter.no_truncation()
    counter.no_padding()
    counts = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), BATCH):  # Encodings are heavy: never all rows at once
        encs = counter.encode_batch(texts[start : start + BATCH], add_special_tokens=False)
        counts[start : start + len(encs)] = [len(e.ids) for e in encs]
    return counts


def row_costs(ds: Dataset, router: Router) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-row, per-tier USD: measured where the data has it, else prices x tokens."""
    missing = np.isnan(ds.cost)
    counts = token_counts(router, ds.texts) if missing.any() else np.zeros(len(ds), np.int64)
    cost = fill_costs(ds, counts)
    if not np.all(np.isfinite(cost)):
        raise EvalError("some row costs are not finite; check the data's total_cost columns")
    totals = cost.sum(axis=0)
    if np.allclose(totals, totals[0]):
        raise EvalError(
            f"every tier costs the same on these rows ({totals[0]:.4g} USD); give "
            "the ladder input_price / output_price (see data/ladders/)"
        )
    info = {
        "measured_cells": int((~missing).sum()),
        "estimated_cells": int(missing.sum()),
        "rule": "measured <model>|total_cost where present, else (input_tokens x input_price"
        " + output_tokens x output_price) / 1e6; input tokens = the bundle tokenizer's"
        " content tokens, untruncated",
        "input_tokens_total": int(counts.sum()) if missing.any() else None,
        "output_tokens": {t.name: t.output_tokens for t in ds.ladder.tiers},
        "prices_per_1m": {t.name: [t.input_price, t.output_price] for t in ds.ladder.tiers},
    }
    return cost, info


def p_sufficient(router: Router, texts: list[str]) -> np.ndarray:
    parts = [router.p_sufficient(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, len(router.tier_names)))


def estimates(router: Router, texts: list[str]) -> Estimates:
    parts = [router.estimates(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    if not parts:
        return router.estimates([])
    return Estimates(
        None if parts[0].p_correct is None else np.concatenate([e.p_correct for e in parts]),  # type: ignore[misc]
        np.concatenate([e.p_sufficient for e in parts]),
        np.concatenate([e.cost for e in parts]),
    )


def rule_curve(router: Router, est: Estimates, quality: float | None) -> RuleCurve | None:
    """The bundle's own rule as served, traced through the quality knob; None for the
    threshold rule (scored on its exact threshold sweep, as for every bundle before)."""
    setting = router.setting(quality=quality)
    if setting.rule is not Rule.UTILITY:
        return None
    knob = router.knob_settings()
    label = f"utility, quality {setting.quality:g} (lambda {setting.value:.4g})"

    def decide(value: float, lo: int, hi: int) -> np.ndarray:
        return router.decide(est, dataclasses.replace(setting, value=value), lo, hi)

    return RuleCurve(
        name=setting.rule.value,
        settings=[s.value for s in knob],
        default=setting.value,
        label=label,
        decide=decide,
        qualities=[s.quality for s in knob],
    )


def _check_outcomes(ds: Dataset) -> None:
    known = ~np.isnan(ds.quality)
    empty = [n for n, k in zip(ds.ladder.names, known.any(axis=0), strict=True) if not k]
    if empty:
        raise EvalError(f"tier(s) {empty} have no known outcome on the {len(ds)} rows")


def _data_info(ds: Dataset, split: Split, cost_info: dict[str, Any]) -> dict[str, Any]:
    formats = sorted({i.format for i in ds.inputs})
    return {
        "inputs": [dataclasses.asdict(i) for i in ds.inputs],
        "rows": len(ds),
        "split": split.value,
        "split_rule": SPLIT_RULES[split],
        "bad_rows": len(ds.problems),
        "bad_row_examples": [str(p) for p in ds.problems[:10]],
        "dropped_unsolved": ds.dropped_unsolved,
        "group_field": {f: GROUP_FIELD.get(f, "group") for f in formats},
        "pass_mark": ds.ladder.pass_mark,
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
) -> EvalResult:
    """Score one bundle. `ladder` defaults to the bundle's manifest ladder and must have its
    tier names; the default operating point is the bundle's own (its rule at its calibrated
    setting), or the threshold rule at `threshold`, or the bundle's rule at the `quality`
    knob; `costs` ([n, K] USD) skips estimation (compare passes the same array to every
    model)."""
    router = load_router(model)
    eval_ladder = ladder or router.manifest.ladder
    check_ladder(eval_ladder, router)
    split = Split(split)
    ds = select_split(load_rows(data, eval_ladder, fmt), split, [router])
    return _evaluate_rows(
        router,
        ds,
        split,
        threshold,
        costs,
        label or (str(model) if not isinstance(model, Router) else None),
        quality,
    )


def _evaluate_rows(
    router: Router,
    ds: Dataset,
    split: Split,
    threshold: float | None,
    costs: np.ndarray | None,
    label: str | None,
    quality: float | None = None,
) -> EvalResult:
    _check_outcomes(ds)
    if threshold is not None and quality is not None:
        raise EvalError("give quality or threshold, not both")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise EvalError(f"threshold must lie in [0, 1], got {threshold}")
    try:
        setting = router.setting(quality, threshold)
    except RungError as exc:
        raise EvalError(str(exc)) from None
    est = estimates(router, ds.texts)
    curve = None if threshold is not None else rule_curve(router, est, quality)
    tau = setting.value if setting.rule is Rule.THRESHOLD else router.manifest.threshold
    if costs is None:
        costs, cost_info = row_costs(ds, router)
    else:
        cost_info = {"rule": "given by the caller"}
        if costs.shape != ds.quality.shape:
            raise EvalError(f"costs shape {costs.shape} != rows x tiers {ds.quality.shape}")
    k = len(ds.ladder)
    inputs = EvalInputs(
        tier_names=ds.ladder.names,
        p_sufficient=est.p_sufficient,
        quality=ds.quality,
        cost=costs,
        sufficient=ds.sufficient,
        labels=ds.labels,
        heuristic=heuristic_decisions(ds.texts, k),
        threshold=tau,
        pass_mark=ds.ladder.pass_mark,
        groups=ds.groups,
        sources=ds.sources,
        rule=curve,
    )
    return EvalResult(
        model=_model_info(router, label or router.manifest.version, tau, setting),
        data=_data_info(ds, split, cost_info),
        ladder=ds.ladder,
        metrics=score(inputs),
    )


def compare(
    models: Sequence[str | Path | Router],
    data: Sequence[str | Path] | Dataset,
    ladder: Ladder | None = None,
    fmt: SourceFormat | str | None = None,
    split: Split | str = Split.ALL,
) -> Comparison:
    """Score every model on the same rows and costs. The ladder defaults to the first model's;
    every model must share its tier names. Costs are estimated once, with the first model's
    tokenizer, so a cheaper tokenizer cannot make a model look cheaper."""
    if len(models) < 2:
        raise EvalError("compare needs two or more models")
    routers = [load_router(x) for x in models]
    eval_ladder = ladder or routers[0].manifest.ladder
    for router in routers:
        check_ladder(eval_ladder, router)
    split = Split(split)
    ds = select_split(load_rows(data, eval_ladder, fmt), split, routers)
    _check_outcomes(ds)
    costs, cost_info = row_costs(ds, routers[0])
    labels = _labels(models, routers)
    results = []
    for router, label in zip(routers, labels, strict=True):
        result = _evaluate_rows(router, ds, split, None, costs, label)
        result.data["cost"] = cost_info
        results.append(result)
    gate = gate_verdicts(routers, labels, ds, costs)
    return Comparison(results=results, data=results[0].data, gate=gate)


def gate_verdicts(
    routers: list[Router], labels: list[str], ds: Dataset, costs: np.ndarray
) -> list[dict[str, str]]:
    """The promotion gate's verdict (train/gate.py, the rule `rung retrain --promote` applies)
    for every model after the first, judged as a candidate against the first."""
    from train.evaluation.gate import figures, judge

    def fig(router: Router):  # noqa: ANN202 - gate.Figures, imported lazily
        p = p_sufficient(router, ds.texts)
        return figures(p, ds.quality, costs, router.manifest.threshold, ds.ladder.pass_mark)

    base = fig(routers[0])
    out = []
    for router, label in zip(routers[1:], labels[1:], strict=True):
        decision = judge(fig(router), base)
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
