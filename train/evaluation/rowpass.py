"""The one pass `rung eval` makes over its rows, batch by batch: split, costs, every model's
estimates and the running sums scoring needs. A batch's texts are dropped once its figures
are added, so memory holds one batch of texts whatever the number of rows (accumulate.py
says what is kept per row).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.bundle import TOKENIZER
from serve.model.errors import RungError
from serve.model.ladder import Ladder
from serve.model.policy import Rule
from serve.model.runtime import Estimates, Router, Setting
from train.data.stream import BATCH, DatasetStream, RowBatch, RowStream
from train.data.types import Dataset, SourceFormat, split_holdout
from train.evaluation.accumulate import Decide, ModelTally, Outcomes, RuleCurve
from train.evaluation.baselines import heuristic_decisions

Rows = RowStream | DatasetStream


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

COST_RULE = (
    "measured <model>|total_cost where present, else (input_tokens x input_price"
    " + output_tokens x output_price) / 1e6; input tokens = the bundle tokenizer's"
    " content tokens, untruncated"
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


def seen_ids(split: Split, routers: Sequence[Router]) -> set[str]:
    """Ids any evaluated bundle trained on (for the unseen split; empty otherwise)."""
    return set().union(*(train_ids(r) for r in routers)) if split is Split.UNSEEN else set()


def split_mask(ids: list[str], split: Split, seen: set[str]) -> np.ndarray | None:
    if split is Split.ALL:
        return None
    if split is Split.UNSEEN:
        return np.fromiter((i not in seen for i in ids), dtype=bool, count=len(ids))
    held = split_holdout(ids)
    return held if split is Split.HOLDOUT else ~held


def open_rows(
    data: Sequence[str | Path] | str | Path | Dataset,
    ladder: Ladder,
    fmt: SourceFormat | str | None = None,
    batch: int = BATCH,
) -> Rows:
    """Outcome tables or labelled queries under the evaluation ladder, to be read once; an
    existing Dataset is re-labelled with the ladder (its prices drive cost estimates)."""
    if isinstance(data, Dataset):
        if data.ladder.names != ladder.names:
            raise EvalError(f"dataset tiers {data.ladder.names} differ from {ladder.names}")
        return DatasetStream(dataclasses.replace(data, ladder=ladder), batch)
    if isinstance(data, str | Path):
        data = [data]
    if not data:
        raise EvalError("no data given")
    return RowStream(list(data), ladder, SourceFormat(fmt) if fmt else None, batch)


class TokenCounter:
    """Content tokens per text with the bundle's tokenizer, untruncated. The embedder's own
    count is exact where it lies below the tokenizer's cap (nothing was cut); only texts at
    the cap are tokenized again, whole."""

    def __init__(self, router: Router) -> None:
        from tokenizers import Tokenizer

        tok = getattr(router.embedder, "tokenizer", None)
        if tok is None:
            raise EvalError("the bundle's embedder exposes no tokenizer to count input tokens")
        limits = tok.truncation
        # Content tokens at or above this may have been cut ([CLS] / [SEP] counted or not).
        self.cap = int(limits["max_length"]) - 2 if limits else None
        # The bundle's file is the embedder's tokenizer before its cap; reading it in Rust
        # skips a ~3 MB Python string that `to_str()` would build.
        path = router.root / TOKENIZER
        self.counter = (
            Tokenizer.from_file(str(path)) if path.is_file() else Tokenizer.from_str(tok.to_str())
        )
        self.counter.no_truncation()
        self.counter.no_padding()

    def counts(self, texts: list[str], seen: np.ndarray | None) -> np.ndarray:
        if seen is None or len(seen) != len(texts):
            redo = np.arange(len(texts))
            out = np.zeros(len(texts), dtype=np.int64)
        else:
            out = np.asarray(seen, dtype=np.int64).copy()
            redo = np.flatnonzero(out >= self.cap) if self.cap is not None else redo[:0]
        if redo.size:
            encs = self.counter.encode_batch([texts[i] for i in redo], add_special_tokens=False)
            out[redo] = [len(e.ids) for e in encs]
        return out


@dataclass
class Scored:
    """A model in the pass: its router, the setting its curve uses, its running figures."""

    router: Router
    curve_setting: Setting
    tally: ModelTally

    def decide(self, est: Estimates) -> Decide | None:
        if self.tally.rule is None:
            return None
        router, setting = self.router, self.curve_setting

        def decide(value: float, lo: int, hi: int) -> np.ndarray:
            return router.decide(est, dataclasses.replace(setting, value=value), lo, hi)

        return decide


def rule_curve(router: Router, quality: float | None) -> tuple[Setting, RuleCurve | None]:
    """The bundle's own rule as served, traced through the quality knob; None for the
    threshold rule (scored on its exact threshold sweep, as for every bundle before)."""
    setting = router.setting(quality=quality)
    if setting.rule is not Rule.UTILITY:
        return setting, None
    knob = router.knob_settings()
    label = f"utility, quality {setting.quality:g} (lambda {setting.value:.4g})"
    return setting, RuleCurve(
        name=setting.rule.value,
        settings=[s.value for s in knob],
        default=setting.value,
        label=label,
        qualities=[s.quality for s in knob],
    )


@dataclass
class PassResult:
    outcomes: Outcomes
    rows: Rows
    ladder: Ladder
    cost_info: dict[str, Any]


def run_pass(
    rows: Rows,
    ladder: Ladder,
    split: Split,
    seen: set[str],
    models: list[Scored],
    costs: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> PassResult:
    """Read every batch once. Costs are measured where the data has them, else estimated
    from the first model's tokenizer (so every model is scored on the same costs), unless
    the caller gives them ([rows after the split, K] USD). `progress(n)` hears of each
    batch's n rows read."""
    outcomes = models[0].tally.outcomes
    k = len(ladder)
    counter: TokenCounter | None = None
    measured = estimated = tokens = before = 0
    for part in rows:
        before += len(part)
        if progress is not None:
            progress(len(part))
        mask = split_mask(part.ids, split, seen)
        if mask is not None:
            part = part.subset(mask)
        if not len(part):
            continue
        ests = [m.router.estimates(part.texts) for m in models]
        if costs is None:
            missing = np.isnan(part.cost)
            measured += int((~missing).sum())
            estimated += int(missing.sum())
            if counter is None:
                counter = TokenCounter(models[0].router)
            counts = counter.counts(part.texts, ests[0].tokens)
            tokens += int(counts.sum())
            cost = _fill_costs(part, ladder, counts, missing)
        else:
            cost = _given_costs(costs, outcomes.rows, len(part), k)
        batch = outcomes.add(
            part.quality,
            cost,
            heuristic_decisions(part.texts, k),
            groups=part.groups,
            sources=part.sources,
        )
        for model, est in zip(models, ests, strict=True):
            model.tally.add(batch, est.p_sufficient, model.decide(est))
    _check(outcomes, split, before)
    if costs is not None:
        if costs.shape != (outcomes.rows, k):
            raise EvalError(f"costs shape {costs.shape} != rows x tiers {(outcomes.rows, k)}")
        return PassResult(outcomes, rows, ladder, {"rule": "given by the caller"})
    totals = np.array([a.cost[0] for a in outcomes.always])
    if np.allclose(totals, totals[0]):
        raise EvalError(
            f"every tier costs the same on these rows ({totals[0]:.4g} USD); give "
            "the ladder input_price / output_price (see data/ladders/)"
        )
    info = {
        "measured_cells": measured,
        "estimated_cells": estimated,
        "rule": COST_RULE,
        "input_tokens_total": tokens if estimated else None,
        "output_tokens": {t.name: t.output_tokens for t in ladder.tiers},
        "prices_per_1m": {t.name: [t.input_price, t.output_price] for t in ladder.tiers},
    }
    return PassResult(outcomes, rows, ladder, info)


def _fill_costs(
    part: RowBatch, ladder: Ladder, counts: np.ndarray, missing: np.ndarray
) -> np.ndarray:
    """Measured cost where the data has it, else the ladder's prices times tokens."""
    n = counts.astype(float)
    est = np.column_stack([t.estimate_cost(n) for t in ladder.tiers]).reshape(part.cost.shape)
    cost = np.where(missing, est, part.cost)
    if not np.all(np.isfinite(cost)):
        raise EvalError("some row costs are not finite; check the data's total_cost columns")
    return cost


def _given_costs(costs: np.ndarray, start: int, n: int, k: int) -> np.ndarray:
    part = costs[start : start + n]
    if costs.ndim != 2 or part.shape != (n, k):
        raise EvalError(f"costs shape {costs.shape} does not cover the rows x {k} tiers")
    return np.asarray(part, dtype=float)


def _check(outcomes: Outcomes, split: Split, before: int) -> None:
    if not outcomes.rows:
        raise EvalError(
            f"no overlapping rows: none of the {before} rows is in split "
            f"'{split.value}' ({SPLIT_RULES[split]})"
        )
    names = outcomes.tier_names
    empty = [n for n, k in zip(names, outcomes.known_any, strict=True) if not k]
    if empty:
        raise EvalError(f"tier(s) {empty} have no known outcome on the {outcomes.rows} rows")
