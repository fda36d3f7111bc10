"""Head families beyond logistic regression, and choosing one per bundle.

Every family is a per-tier binary head (masked to the rows whose outcome for that tier is
known, like `TierClassifier`) that skl2onnx converts, so serving stays ONNX Runtime alone:
- logreg: `TierClassifier` (scaled logistic regression, C by CV);
- mlp: scaled features -> one hidden layer of 64 ReLU units, early stopping;
- knn: the 25 nearest training prompts by cosine similarity of the embedding (the embedding
  is L2-normalised, so Euclidean distance ranks neighbours as cosine does), their mean
  outcome; its graph holds every training row, so serving cost grows with the training set
  and the family is only tried up to `KNN_MAX_ROWS` rows;
- ensemble: the mean of the logreg and mlp heads' probabilities.
The family is chosen by cross-validated routing quality: the area under the utility rule's
cost-quality curve on out-of-fold predictions (train.fit.calibrate.curve_area).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from joblib import Parallel, delayed
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from serve.model.runtime import monotone_p_sufficient
from train.fit.heads import ConstantHead, TierClassifier, _check_target, _one_class
from train.fit.sampling import fold_strata
from train.fit.threads import workers_for

KNN_NEIGHBOURS = 25
KNN_MAX_ROWS = 4000  # serving computes a distance to every training row of every head
MLP_HIDDEN = 64


class HeadFamily(str, Enum):
    AUTO = "auto"  # the best of the others by cross-validated routing quality
    LOGREG = "logreg"
    MLP = "mlp"
    KNN = "knn"
    ENSEMBLE = "ensemble"


def make_family_head(family: HeadFamily, seed: int, embedding_dim: int) -> Pipeline:
    if family is HeadFamily.MLP:
        mlp = MLPClassifier(
            hidden_layer_sizes=(MLP_HIDDEN,),
            alpha=1e-2,
            early_stopping=True,
            max_iter=300,
            random_state=seed,
        )
        return Pipeline([("scale", StandardScaler()), ("mlp", mlp)])
    if family is HeadFamily.KNN:
        embedding = ColumnTransformer(
            [("embedding", "passthrough", list(range(embedding_dim)))], remainder="drop"
        )
        knn = KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS, metric="euclidean")
        return Pipeline([("embedding", embedding), ("knn", knn)])
    raise ValueError(f"no single-model head for family {family.value}")


class MeanHead:
    """The mean of several heads' P(sufficient): the ensemble family."""

    def __init__(self, members: list[Pipeline | ConstantHead]) -> None:
        self.members = members

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_proba(x) for m in self.members], axis=0)


@dataclass
class FamilyClassifier:
    """Per-tier heads of one family (mlp, knn), the top tier included."""

    family: HeadFamily
    tier_names: list[str]
    embedding_dim: int
    seed: int = 0
    folds: int = 5
    heads: list[Pipeline | ConstantHead] = field(default_factory=list)

    def _fit_one(self, t: int, x: np.ndarray, y: np.ndarray) -> Pipeline | ConstantHead:
        if t == len(self.tier_names) - 1 and _one_class(y):
            return ConstantHead(y)
        _check_target(y, self.tier_names[t])
        head = make_family_head(self.family, self.seed, self.embedding_dim)
        n_neighbours = min(KNN_NEIGHBOURS, len(y))
        if self.family is HeadFamily.KNN:
            head.set_params(knn__n_neighbors=n_neighbours)
        return head.fit(x, y)

    def fit(
        self, x: np.ndarray, sufficient: np.ndarray, weights: np.ndarray | None = None
    ) -> FamilyClassifier:
        """Weights are not used: neither MLPClassifier nor kNN take sample weights."""
        rows = np.arange(len(x))
        tasks = [(t, _known_rows(rows, sufficient, t), None) for t in range(len(self.tier_names))]
        self.heads = [head for head, _ in self._run(tasks, x, sufficient)]
        return self

    def _run(
        self,
        tasks: list[tuple[int, np.ndarray, np.ndarray | None]],
        x: np.ndarray,
        sufficient: np.ndarray,
    ) -> list[tuple[Pipeline | ConstantHead, np.ndarray | None]]:
        """Fit each (tier, fit rows, rows to predict) task; in worker processes when the work
        is big enough to pay their start-up (the MLP candidates were a third of training time
        at 50k rows, and each fit is independent and seeded, so the result is the same)."""
        args = [
            (t, x[fit], sufficient[fit, t].astype(int), None if pred is None else x[pred])
            for t, fit, pred in tasks
        ]
        jobs = workers_for(sum(len(a[1]) for a in args) * x.shape[1])
        if jobs == 1:
            return [self._fit_predict(*a) for a in args]
        # arrays as arguments, not in a closure: joblib memory-maps them for the workers
        return Parallel(n_jobs=jobs)(delayed(self._fit_predict)(*a) for a in args)

    def _fit_predict(
        self, t: int, x: np.ndarray, y: np.ndarray, x_predict: np.ndarray | None
    ) -> tuple[Pipeline | ConstantHead, np.ndarray | None]:
        head = self._fit_one(t, x, y)
        return head, None if x_predict is None else head.predict_proba(x_predict)[:, 1]

    def p_tier(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([h.predict_proba(x)[:, 1] for h in self.heads])

    def p_sufficient(self, x: np.ndarray) -> np.ndarray:
        return monotone_p_sufficient(self.p_tier(x)[:, : len(self.tier_names) - 1])

    def out_of_fold(
        self,
        x: np.ndarray,
        sufficient: np.ndarray,
        weights: np.ndarray | None = None,
        raw: bool = True,
    ) -> np.ndarray:
        k = len(self.tier_names)
        key = fold_strata(sufficient[:, : k - 1], self.folds)
        splitter = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed)
        tasks = [
            (t, _known_rows(fit_idx, sufficient, t), val_idx)
            for fit_idx, val_idx in splitter.split(x, key)
            for t in range(k)
        ]
        oof = np.full((len(x), k), np.nan)
        for (t, _, val_idx), (_, p) in zip(tasks, self._run(tasks, x, sufficient), strict=True):
            oof[val_idx, t] = p
        return oof if raw else monotone_p_sufficient(oof[:, : k - 1])


def _known_rows(rows: np.ndarray, sufficient: np.ndarray, t: int) -> np.ndarray:
    return rows[~np.isnan(sufficient[rows, t])]


@dataclass
class EnsembleClassifier:
    """The mean of a fitted logreg and a fitted mlp classifier, head by head."""

    members: list[TierClassifier | FamilyClassifier]
    tier_names: list[str]

    @property
    def heads(self) -> list[MeanHead | ConstantHead]:
        out: list[MeanHead | ConstantHead] = []
        for hs in zip(*(m.heads for m in self.members), strict=True):
            if all(isinstance(h, ConstantHead) for h in hs):
                out.append(hs[0])  # every member agrees on a constant: keep one
            else:
                out.append(MeanHead(list(hs)))
        return out

    def p_tier(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.p_tier(x) for m in self.members], axis=0)

    def p_sufficient(self, x: np.ndarray) -> np.ndarray:
        return monotone_p_sufficient(self.p_tier(x)[:, : len(self.tier_names) - 1])
