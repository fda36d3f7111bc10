"""One logistic regression per tier, each estimating P(this tier's answer suffices).

Bundles before schema 2 had heads for the non-top tiers only (`include_top=False`); the
utility rule needs the top tier's correctness too. A tier whose known outcomes are (almost)
all one class, as the top tier on labelled queries, gets a constant head.

Per-tier heads (rather than one multiclass model over the cheapest sufficient tier) train on
exactly the rows whose outcome for that tier is known, so censored labels from escalation
logs are masked instead of guessed. Serving turns them into a non-decreasing `p_sufficient`
with a running max (`serve.model.runtime.monotone_p_sufficient`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from serve.model.runtime import monotone_p_sufficient
from train.data.types import DataError
from train.fit.sampling import fold_strata, stratified_sample
from train.fit.threads import one_thread, threads_for, workers_for

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MIN_ROWS_PER_CLASS = 5
# C is chosen by CV on at most this many rows per head (a stratified sample), then the head
# is refitted on every row: on 1M rows the grid x folds refits were most of training time,
# and C's choice is stable long before this size.
SELECTION_ROWS = 10_000


class ClassWeight(str, Enum):
    """How heads treat the imbalance between sufficient and insufficient rows.

    NONE keeps probabilities calibrated, so one threshold means the same thing on every tier;
    imbalance is then handled by stratified folds, AUC-based model selection (blind to base
    rates) and a threshold calibrated on held-out predictions. BALANCED re-weights classes;
    measured on RouterBench's held-out split it lowered the routing AUC (0.781 -> 0.771).
    """

    NONE = "none"
    BALANCED = "balanced"


def make_head(c: float, seed: int, class_weight: ClassWeight = ClassWeight.NONE) -> Pipeline:
    weight = "balanced" if class_weight is ClassWeight.BALANCED else None
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "logreg",
                LogisticRegression(C=c, class_weight=weight, max_iter=3000, random_state=seed),
            ),
        ]
    )


def _fit_scaler_chunked(scaler: StandardScaler, x: np.ndarray, chunk: int = 65_536) -> None:
    """Fit `scaler` as `scaler.fit(x)` would, in row chunks with float64 sums: sklearn's fit
    makes float64 temporaries the size of x (1.6 GB each on 800k x 257 float32 rows), which
    set training's peak memory."""
    n = x.shape[0]
    total = np.zeros(x.shape[1])
    for start in range(0, n, chunk):
        total += x[start : start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(x.shape[1])
    for start in range(0, n, chunk):
        sq += np.square(x[start : start + chunk] - mean).sum(axis=0)
    var = sq / n
    scale = np.sqrt(var)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # constant columns, as sklearn does
    scaler.mean_, scaler.var_, scaler.scale_ = mean, var, scale
    scaler.n_samples_seen_ = np.int64(n)
    scaler.n_features_in_ = x.shape[1]


def _known(y: np.ndarray) -> np.ndarray:
    return ~np.isnan(y)


def _check_target(y: np.ndarray, tier: str) -> None:
    counts = np.bincount(y.astype(int), minlength=2)
    if counts.min() < MIN_ROWS_PER_CLASS:
        raise DataError(
            f"tier {tier!r}: need at least {MIN_ROWS_PER_CLASS} rows where it suffices and "
            f"{MIN_ROWS_PER_CLASS} where it does not, got {counts[1]} and {counts[0]}"
        )


class ConstantHead:
    """P(sufficient) = a constant: for a tier whose known outcomes are (nearly) all one class.

    Laplace-smoothed rate of the known rows, so it is never exactly 0 or 1. Exported to ONNX
    as a constant column (train.fit.export)."""

    def __init__(self, y: np.ndarray) -> None:
        self.p = float((y.sum() + 1.0) / (y.size + 2.0))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.tile([1.0 - self.p, self.p], (len(x), 1))


def _one_class(y: np.ndarray) -> bool:
    return int(np.bincount(y.astype(int), minlength=2).min()) < MIN_ROWS_PER_CLASS


@dataclass
class TierClassifier:
    tier_names: list[str]
    seed: int = 0
    folds: int = 5
    class_weight: ClassWeight = ClassWeight.NONE
    include_top: bool = False  # schema 2: a head for the top tier as well
    selection_rows: int = SELECTION_ROWS
    heads: list[Pipeline | ConstantHead] = field(default_factory=list)
    best_c: list[float] = field(default_factory=list)
    cv_auc: list[float] = field(default_factory=list)

    @property
    def n_heads(self) -> int:
        return len(self.tier_names) - (0 if self.include_top else 1)

    def _constant(self, t: int, y: np.ndarray) -> bool:
        """The top tier (only) may be one class: it then gets a constant head."""
        return self.include_top and t == len(self.tier_names) - 1 and _one_class(y)

    def _cv(self, n_pos_min: int) -> StratifiedKFold:
        return StratifiedKFold(
            min(self.folds, max(2, n_pos_min)), shuffle=True, random_state=self.seed
        )

    def fit(
        self,
        x: np.ndarray,
        sufficient: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> TierClassifier:
        """Choose C per head by stratified CV (ROC AUC) on at most `selection_rows` known rows,
        then refit on every known row."""
        self.heads, self.best_c, self.cv_auc = [], [], []
        for t in range(self.n_heads):
            known = _known(sufficient[:, t])
            y = sufficient[known, t].astype(int)
            if not self._constant(t, y):
                _check_target(y, self.tier_names[t])
            w = None if weights is None else weights[known]
            if self._constant(t, y):
                self.heads.append(ConstantHead(y))
                self.best_c.append(float("nan"))
                self.cv_auc.append(float("nan"))
                continue
            sel = stratified_sample(y, self.selection_rows, self.seed)
            with one_thread():
                c, auc = self._choose_c(x[np.flatnonzero(known)[sel]], y[sel], w, sel)
            with threads_for(len(y), x.shape[1]):
                head = self._fit_scaled_in_place(x, known, y, w, c)
            self.heads.append(head)
            self.best_c.append(c)
            self.cv_auc.append(auc)
        return self

    def _fit_scaled_in_place(
        self, x: np.ndarray, known: np.ndarray, y: np.ndarray, w: np.ndarray | None, c: float
    ) -> Pipeline:
        """`make_head(c).fit(x[known], y)` without a scaled copy of the rows: the rows are
        standardised in place for the fit and restored after (float32 round trip, ~1e-7
        relative). On 800k x 257 features the copy was 0.8 GB of a 4.4 GB peak."""
        head = make_head(c, self.seed, self.class_weight)
        scaler, logreg = head.named_steps["scale"], head.named_steps["logreg"]
        rows = x if known.all() else x[known]  # a masked head works on its own copy anyway
        _fit_scaler_chunked(scaler, rows)
        mean, scale = scaler.mean_.astype(rows.dtype), scaler.scale_.astype(rows.dtype)
        rows -= mean
        rows /= scale
        try:
            logreg.fit(rows, y, sample_weight=w)
        finally:
            if rows is x:
                rows *= scale
                rows += mean
        return head

    def _choose_c(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, sel: np.ndarray
    ) -> tuple[float, float]:
        """Best C and its mean CV ROC AUC, from one warm-started regularisation path per fold
        (LogisticRegressionCV): same choice as refitting the grid from scratch in every fold,
        measured at 2.3x less CPU on 40k rows. The scaler is fitted on the whole sample, a
        negligible leak for a standardisation of 256 dense features."""
        weight = "balanced" if self.class_weight is ClassWeight.BALANCED else None
        path = LogisticRegressionCV(
            Cs=list(C_GRID),
            cv=self._cv(int(np.bincount(y).min())),
            scoring="roc_auc",
            class_weight=weight,
            l1_ratios=(0.0,),
            use_legacy_attributes=False,
            max_iter=3000,
            random_state=self.seed,
            n_jobs=workers_for(x.size * self.folds),  # folds in parallel when it pays
        )
        path.fit(StandardScaler().fit_transform(x), y, sample_weight=None if w is None else w[sel])
        mean_auc = path.scores_.mean(axis=0)[0]  # [n_cs]
        return float(path.C_), float(mean_auc.max())

    def p_tier(self, x: np.ndarray) -> np.ndarray:
        """[n, n_heads] raw P(tier t suffices), before the running max."""
        return np.column_stack([h.predict_proba(x)[:, 1] for h in self.heads])

    def p_sufficient(self, x: np.ndarray) -> np.ndarray:
        return monotone_p_sufficient(self.p_tier(x)[:, : len(self.tier_names) - 1])

    def out_of_fold(
        self,
        x: np.ndarray,
        sufficient: np.ndarray,
        weights: np.ndarray | None = None,
        raw: bool = False,
    ) -> np.ndarray:
        """p_sufficient (or with `raw`, the heads' own [n, n_heads] outputs) for every row from
        heads that never saw it: held-out data for the threshold, without giving up rows to a
        separate validation split."""
        k = len(self.tier_names) - 1
        key = fold_strata(sufficient[:, :k], self.folds)
        splitter = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        oof = np.full((len(x), self.n_heads), np.nan)
        for fit_idx, val_idx in splitter.split(x, key):
            for t in range(self.n_heads):
                rows = fit_idx[_known(sufficient[fit_idx, t])]
                y = sufficient[rows, t].astype(int)
                w = None if weights is None else weights[rows]
                if isinstance(self.heads[t], ConstantHead):
                    oof[val_idx, t] = ConstantHead(y).p
                    continue
                head = make_head(self.best_c[t], self.seed, self.class_weight)
                with warnings.catch_warnings():
                    # A fold of a tiny set can end lbfgs's line search "ABNORMAL" at its optimum
                    # (seen on the top tier's head, 36 rows): the fold's fit is still usable
                    # for out-of-fold predictions; the final heads keep the warning.
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    head.fit(x[rows], y, logreg__sample_weight=w)
                oof[val_idx, t] = head.predict_proba(x[val_idx])[:, 1]
        return oof if raw else monotone_p_sufficient(oof[:, :k])


def head_auc(p_sufficient: np.ndarray, sufficient: np.ndarray) -> list[float]:
    """ROC AUC of each non-top head against known outcomes (NaN if one class only)."""
    out = []
    for t in range(sufficient.shape[1] - 1):
        known = _known(sufficient[:, t])
        y = sufficient[known, t]
        ok = known.any() and 0 < y.sum() < y.size
        out.append(float(roc_auc_score(y, p_sufficient[known, t])) if ok else float("nan"))
    return out
