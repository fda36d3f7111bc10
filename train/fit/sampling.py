"""Stratified row samples: what keeps model selection and `--max-rows` bounded on big data.

Choosing C by cross-validation and calibrating the threshold on out-of-fold predictions need
a few tens of thousands of rows to be stable; past that they only cost time (grid x folds
refits on every row). So both run on a stratified sample, and the final heads fit on all rows.
"""

from __future__ import annotations

import numpy as np


def stratified_sample(strata: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `size` rows drawn without replacement, each stratum kept at its share
    (largest remainders round up), every stratum with at least one row when size allows."""
    strata = np.asarray(strata)
    n = len(strata)
    if size <= 0:
        raise ValueError(f"sample size must be positive, got {size}")
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    values, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    exact = counts * (size / n)
    take = np.floor(exact).astype(int)
    short = size - int(take.sum())
    take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
    picked = []
    for k in range(len(values)):
        rows = np.flatnonzero(inverse == k)
        picked.append(rng.choice(rows, size=min(take[k], rows.size), replace=False))
    return np.sort(np.concatenate(picked))


def outcome_strata(sufficient: np.ndarray) -> np.ndarray:
    """One key per pattern of known / sufficient / insufficient outcomes across the tiers."""
    codes = np.nan_to_num(sufficient, nan=2).astype(np.int64)
    return codes @ (3 ** np.arange(codes.shape[1], dtype=np.int64))


def fold_strata(sufficient: np.ndarray, folds: int) -> np.ndarray:
    """Stratification key for out-of-fold splits: the outcome pattern, with strata rarer than
    `folds` pooled so the split stays stratified. Shared by every head family so their folds
    match."""
    _, key = np.unique(outcome_strata(sufficient), return_inverse=True)
    counts = np.bincount(key)
    key[counts[key] < folds] = -1
    return key
