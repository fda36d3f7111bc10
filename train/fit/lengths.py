"""The per-request cost estimate: predicted answer length per tier, learned where the data
records costs.

A tier's cost on a request is input tokens x input price + answer tokens x output price. Input
tokens are counted at serve time; the answer length is not known before the call, and it
differs by task far more than by model (a one-letter multiple-choice answer against a page of
code), so a fixed `output_tokens` per tier misprices whole task types. Where the training data
records a tier's cost (RouterBench's `<model>|total_cost`, escalation logs' `cost_usd`), the
answer length it implies, (cost x 1e6 - input tokens x input price) / output price, is
regressed on the request's features: a ridge regression of log1p(tokens), which serving runs
in the same ONNX graph as the heads (microseconds). Otherwise the ladder's `output_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from serve.model.ladder import Ladder
from serve.model.policy import CostModel, tokens_from_log

MIN_COST_ROWS = 30  # fewer recorded costs than this: use the ladder's output_tokens
ALPHAS = (1.0, 10.0, 100.0, 1000.0)
LEARNED = "learned from recorded costs (ridge on the request's features, log1p tokens)"
FALLBACK = "the ladder's output_tokens (the data records no costs for this tier)"


def implied_output_tokens(cost: np.ndarray, input_tokens: np.ndarray, ladder: Ladder) -> np.ndarray:
    """[n, K] answer tokens that recorded costs imply under the ladder's prices (NaN where no
    cost is recorded or the tier has no output price); clipped at 0."""
    in_price = np.array([t.input_price for t in ladder.tiers])
    out_price = np.array([t.output_price for t in ladder.tiers])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (cost * 1e6 - input_tokens[:, None] * in_price) / out_price
    out[:, out_price <= 0] = np.nan
    return np.where(np.isnan(out), np.nan, np.maximum(out, 0.0))


def _regressor(alpha: float) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=alpha))])


@dataclass
class LengthModel:
    """One length model per tier: a fitted pipeline, or a constant log1p(output_tokens)."""

    ladder: Ladder
    seed: int = 0
    models: list[Pipeline | float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    smear: list[float] = field(default_factory=list)

    @property
    def learned(self) -> list[bool]:
        return [not isinstance(m, float) for m in self.models]

    def fit(self, x: np.ndarray, cost: np.ndarray, input_tokens: np.ndarray) -> LengthModel:
        target = implied_output_tokens(cost, input_tokens, self.ladder)
        self.models, self.sources, self.rows, self.smear = [], [], [], []
        for t, tier in enumerate(self.ladder.tiers):
            known = ~np.isnan(target[:, t])
            self.rows.append(int(known.sum()))
            if known.sum() < MIN_COST_ROWS:
                self.models.append(float(np.log1p(tier.output_tokens)))
                self.sources.append(FALLBACK)
                self.smear.append(0.0)
                continue
            y = np.log1p(target[known, t])
            search = GridSearchCV(
                _regressor(1.0),
                {"ridge__alpha": list(ALPHAS)},
                cv=KFold(5, shuffle=True, random_state=self.seed),
                scoring="neg_mean_squared_error",
            )
            search.fit(x[known], y)
            model = _regressor(float(search.best_params_["ridge__alpha"])).fit(x[known], y)
            # Smearing (Duan): exp of a log-scale prediction estimates the median; the mean
            # answer length, which expected cost needs, is larger by mean(exp(residual)).
            resid = y - model.predict(x[known])
            smear = float(np.log(np.mean(np.exp(resid))))
            model[-1].intercept_ = float(model[-1].intercept_ + smear)
            self.smear.append(smear)
            self.models.append(model)
            self.sources.append(LEARNED)
        return self

    def log_tokens(self, x: np.ndarray) -> np.ndarray:
        """[n, K] predicted log1p(answer tokens), as the exported graph computes it."""
        cols = [np.full(len(x), m) if isinstance(m, float) else m.predict(x) for m in self.models]
        return np.column_stack(cols)

    def out_of_fold_log_tokens(
        self, x: np.ndarray, cost: np.ndarray, input_tokens: np.ndarray
    ) -> np.ndarray:
        """log_tokens for every row from models that never saw it (for calibrating lambda on
        the costs serving would estimate)."""
        out = self.log_tokens(x)
        target = implied_output_tokens(cost, input_tokens, self.ladder)
        for t, m in enumerate(self.models):
            if isinstance(m, float):
                continue
            known = ~np.isnan(target[:, t])
            folds = KFold(5, shuffle=True, random_state=self.seed)
            alpha = m.get_params()["ridge__alpha"]
            y = np.log1p(target[known, t])
            pred = cross_val_predict(_regressor(alpha), x[known], y, cv=folds)
            shift = self.smear[t]
            out[known, t] = pred + shift  # same smearing as the final model
        return out

    def manifest(self, cost_model: CostModel) -> dict[str, Any]:
        return {
            "learned": self.learned,
            "chars_per_token": cost_model.chars_per_token,
            "per_tier": {
                tier.name: {"answer_length": src, "rows_with_recorded_cost": n}
                for tier, src, n in zip(self.ladder.tiers, self.sources, self.rows, strict=True)
            },
            "formula": "(input_tokens x input_price + answer_tokens x output_price) / 1e6; "
            "input tokens = the bundle tokenizer's content tokens, extended past the token "
            "cap by characters / chars_per_token",
        }


def estimated_costs(
    cost_model: CostModel, input_tokens: np.ndarray, log_tokens: np.ndarray
) -> np.ndarray:
    return cost_model.costs(input_tokens, tokens_from_log(log_tokens))


def estimate_error(estimated: np.ndarray, recorded: np.ndarray, names: list[str]) -> dict:
    """How far estimated costs are from recorded ones, per tier, on rows with a record."""
    out = {}
    for t, name in enumerate(names):
        known = ~np.isnan(recorded[:, t]) & (recorded[:, t] > 0)
        if not known.any():
            continue
        est, rec = estimated[known, t], recorded[known, t]
        rel = np.abs(est - rec) / rec
        out[name] = {
            "rows": int(known.sum()),
            "median_abs_rel_error": float(np.median(rel)),
            "mean_abs_rel_error": float(np.mean(rel)),
            "total_ratio": float(est.sum() / rec.sum()),
        }
    return out
