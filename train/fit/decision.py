"""Training the decision: the cost model, both rules calibrated on out-of-fold predictions,
and the figures behind the bundle's default setting.

`fit_decision` runs after the heads are fitted; the pipeline only passes arrays in and writes
what comes out into the manifest, so this module holds everything about how a bundle decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from serve.model.fasttok import WordPieceShortcut, batch_ids
from serve.model.ladder import Ladder
from serve.model.policy import CostModel, Policy, Rule, decide_threshold, decide_utility
from serve.model.runtime import monotone_p_sufficient
from train.data.types import Dataset
from train.evaluation.metrics import operating_point
from train.fit.calibrate import Sweep, calibrate, curve_area, knob_table, summary, sweep
from train.fit.lengths import LengthModel, estimate_error, estimated_costs

DEFAULT_CHARS_PER_TOKEN = 4.0


def untruncated_counter(token_counter: Any) -> Any:
    # The transformer embedder counts through serving's runtime (train.embedders.transformer
    # .ServingTokenCounter); its tokenizer is the one to copy.
    runtime = getattr(token_counter, "runtime", None)
    base = runtime.tokenizer if runtime is not None else token_counter
    tok = Tokenizer.from_str(base.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(counter: Any, texts: list[str]) -> np.ndarray:
    """Content tokens per text, through the exact WordPiece shortcut where it applies (the
    `tokenizers` call costs 130-340 us a row)."""
    fast = WordPieceShortcut.for_tokenizer(counter) if isinstance(counter, Tokenizer) else None
    return np.fromiter(map(len, batch_ids(counter, fast, texts)), np.int64, len(texts))


def chars_per_token(texts: list[str], full_counts: np.ndarray) -> float:
    tokens = int(full_counts.sum())
    return sum(len(t) for t in texts) / tokens if tokens else DEFAULT_CHARS_PER_TOKEN


def input_tokens(cm: CostModel, counted: np.ndarray, texts: list[str]) -> np.ndarray:
    """What serving counts: content tokens up to the cap, extended by characters past it."""
    return np.array([cm.input_tokens(int(c), len(t)) for c, t in zip(counted, texts, strict=True)])


def true_costs(ds: Dataset, cm: CostModel, n_in: np.ndarray) -> np.ndarray:
    """Recorded cost where the data has it, else prices x tokens with the ladder's lengths."""
    cost = ds.cost.copy()
    est = cm.costs(n_in, None)
    missing = np.isnan(cost)
    cost[missing] = est[missing]
    return cost


@dataclass
class DecisionFit:
    rule: Rule
    lengths: LengthModel
    cost_model: CostModel
    policy: Policy
    threshold: float
    utility: Policy  # calibrated whichever rule is chosen, for held-out comparisons
    figures: dict[str, Any]  # out-of-fold figures of both rules, for the manifest

    def manifest_decision(self) -> dict[str, Any]:
        return {**self.policy.to_dict(), "calibration": self.figures}

    def manifest_cost_model(self) -> dict[str, Any]:
        return self.lengths.manifest(self.cost_model)


def _rule_figures(s: Sweep, policy: Policy) -> dict[str, Any]:
    return {**summary(s, policy), "curve_auc": curve_area(s)}


@dataclass
class CostFit:
    """The cost model and what calibration needs from it on the training rows."""

    lengths: LengthModel
    cost_model: CostModel
    estimated_oof: np.ndarray  # [n, K] cost estimates from length models that never saw the row
    true: np.ndarray  # [n, K] recorded (else list-price) costs, what scoring uses


def fit_costs(
    ladder: Ladder,
    token_cap: int,
    x: np.ndarray,
    ds: Dataset,
    counted: np.ndarray,
    full_counts: np.ndarray,
    seed: int = 0,
) -> CostFit:
    """Answer lengths learned on every row with a recorded cost (else the ladder's)."""
    base = CostModel.from_ladder(
        ladder, token_cap, {"chars_per_token": chars_per_token(ds.texts, full_counts)}
    )
    n_in = input_tokens(base, counted, ds.texts)
    lengths = LengthModel(ladder, seed=seed).fit(x, ds.cost, n_in)
    cm = CostModel.from_ladder(
        ladder,
        token_cap,
        {"learned": lengths.learned, "chars_per_token": base.chars_per_token},
    )
    est_oof = estimated_costs(cm, n_in, lengths.out_of_fold_log_tokens(x, ds.cost, n_in))
    return CostFit(lengths, cm, est_oof, true_costs(ds, cm, n_in))


def utility_curve_area(oof_raw: np.ndarray, costs: CostFit, ds: Dataset, rows: np.ndarray) -> float:
    """Cross-validated routing quality of a set of heads: the utility rule's curve area."""
    s = sweep(
        Rule.UTILITY, oof_raw[rows], costs.estimated_oof[rows], ds.quality[rows], costs.true[rows]
    )
    return curve_area(s)


def fit_decision(
    rule: Rule,
    costs: CostFit,
    ds: Dataset,
    oof_raw: np.ndarray,
    scored: np.ndarray,
    quality_share: float,
    threshold: float,
) -> DecisionFit:
    """Both rules swept on the out-of-fold predictions of the `scored` rows; the chosen
    rule's table and default setting."""
    ladder = ds.ladder
    k = len(ladder)
    p_suff = monotone_p_sufficient(oof_raw[:, : k - 1])
    q, c, e = ds.quality[scored], costs.true[scored], costs.estimated_oof[scored]
    s_util = sweep(Rule.UTILITY, oof_raw[scored], e, q, c)
    s_thr = sweep(Rule.THRESHOLD, p_suff[scored], e, q, c)
    utility = calibrate(s_util, quality_share)
    thr_table = knob_table(s_thr)
    thresh = Policy(Rule.THRESHOLD, quality_share, threshold, thr_table)
    figures = {
        "method": "out-of-fold predictions of the training rows; decisions use out-of-fold "
        "cost estimates, scoring the recorded (or list-price) costs",
        "rows": int(scored.sum()),
        "utility": _rule_figures(s_util, utility),
        "threshold": _rule_figures(s_thr, thresh),
        "cost_estimate_out_of_fold": estimate_error(e, ds.cost[scored], ladder.names),
    }
    policy = utility if rule is Rule.UTILITY else thresh
    return DecisionFit(rule, costs.lengths, costs.cost_model, policy, threshold, utility, figures)


def held_out_figures(
    fit: DecisionFit,
    p_raw: np.ndarray,
    x: np.ndarray,
    ds: Dataset,
    counted: np.ndarray,
) -> dict[str, Any]:
    """Both rules at their default settings on held-out rows, and the cost estimate's error
    against recorded costs (next to the ladder's fixed answer lengths)."""
    cm = fit.cost_model
    n_in = input_tokens(cm, counted, ds.texts)
    est = estimated_costs(cm, n_in, fit.lengths.log_tokens(x))
    cost = true_costs(ds, cm, n_in)
    k = len(ds.ladder)
    top = operating_point(np.full(len(ds), k - 1), ds.quality, cost)
    out: dict[str, Any] = {}
    p_suff = monotone_p_sufficient(p_raw[:, : k - 1])
    decisions = {
        "threshold": decide_threshold(p_suff, fit.threshold),
        "utility": decide_utility(p_raw, est, fit.utility.value),
    }
    for name, d in decisions.items():
        point = operating_point(d, ds.quality, cost)
        out[name] = {
            "quality_share_of_top": point.quality / top.quality if top.quality else float("nan"),
            "cost_share_of_top": point.cost / top.cost if top.cost else float("nan"),
            "traffic_share": (np.bincount(d, minlength=k) / max(len(d), 1)).tolist(),
        }
    out["cost_estimate"] = {
        "learned_or_fallback": estimate_error(est, ds.cost, ds.ladder.names),
        "ladder_output_tokens": estimate_error(cm.costs(n_in, None), ds.cost, ds.ladder.names),
    }
    return out
