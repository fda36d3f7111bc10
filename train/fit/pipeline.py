"""`rung train`: data -> embeddings -> per-tier heads -> threshold -> verified bundle."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from serve.model.bundle import (
    CLASSIFIER,
    TRAINING_DIR,
    Manifest,
    atomic_bundle_dir,
    sha256_file,
    write_manifest,
)
from serve.model.ladder import Ladder
from serve.model.policy import Rule
from serve.model.runtime import Router, monotone_p_sufficient
from train.data.load import load_dataset
from train.data.types import Dataset, SourceFormat, fill_costs, split_holdout
from train.embedders.base import EmbedderChoice, TrainingEmbedder
from train.embedders.choice import build_embedder
from train.evaluation.operating import operating_summary
from train.fit.choose import HeadChoice, choose_heads
from train.fit.decision import (
    DecisionFit,
    count_tokens,
    fit_costs,
    fit_decision,
    held_out_figures,
    input_tokens,
    untruncated_counter,
)
from train.fit.export import (
    CORRECT,
    INPUT,
    LENGTHS,
    check_parity,
    correctness_to_onnx,
    has_output,
)
from train.fit.families import HeadFamily
from train.fit.heads import (
    SELECTION_ROWS,
    ClassWeight,
    ConstantHead,
    TierClassifier,
    head_auc,
)
from train.fit.sampling import outcome_strata, stratified_sample
from train.fit.threads import one_thread
from train.fit.threshold import ThresholdTarget, calibrate_threshold

LIBRARIES = (
    "numpy",
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "sentence-transformers",
    "torch",
    "transformers",
)


@dataclass
class TrainConfig:
    data: list[str]
    out: Path
    ladder: Ladder
    embedder: EmbedderChoice = EmbedderChoice.STATIC
    embedder_path: Path | None = None
    fmt: SourceFormat | None = None
    holdout: bool = True  # hold out the fixed hash split for the published test figures
    target: ThresholdTarget = field(default_factory=ThresholdTarget)
    seed: int = 0
    class_weight: ClassWeight = ClassWeight.NONE
    progress: bool = True
    overwrite: bool = False
    name: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    extra_rows: Dataset | None = None  # rows from other sources (logs) merged before training
    # Held-out rows of the merged data (base rows, then extra_rows); replaces the hash split.
    holdout_mask: Callable[[Dataset], np.ndarray] | None = None
    # Threshold and manifest metrics from rows whose outcome is known on every tier only: log
    # rows leave untried tiers unknown, and scoring them would drop rows selectively.
    score_complete_rows: bool = False
    # How the bundle decides by default: expected utility (per-tier correctness and cost) or
    # the cheapest tier whose p_sufficient reaches a threshold; both are calibrated.
    decision: Rule = Rule.UTILITY
    # Head family: chosen by cross-validated routing quality among the candidates (AUTO).
    head: HeadFamily = HeadFamily.AUTO
    # C's cross-validation and the threshold's out-of-fold predictions use at most this many
    # rows (a stratified sample); the heads themselves fit on every row.
    selection_rows: int = SELECTION_ROWS
    max_rows: int | None = None  # train on a stratified sample of this many rows (per tier)


@dataclass
class TrainResult:
    bundle: Path
    manifest: Manifest
    train_rows: int
    test_rows: int
    seconds: dict[str, float]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[lib] = metadata.version(lib)
    return out


def _split_metrics(p: np.ndarray, ds: Dataset, cost: np.ndarray, threshold: float) -> dict:
    summary = operating_summary(p, ds.quality, cost, threshold, ds.ladder.names)
    summary["head_auc"] = dict(zip(ds.ladder.names[:-1], head_auc(p, ds.sufficient), strict=True))
    return summary


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def train_bundle(cfg: TrainConfig, log: Any = print) -> TrainResult:
    """Train, calibrate and write a bundle. Model selection runs on one BLAS thread
    (train.fit.threads says why); fits on every row of a big set lift the limit."""
    with one_thread():
        return _train_bundle(cfg, log)


def _train_bundle(cfg: TrainConfig, log: Any) -> TrainResult:
    import time

    clock = {"start": time.perf_counter()}
    ds = load_dataset(cfg.data, cfg.ladder, cfg.fmt)
    if cfg.extra_rows is not None:
        ds = concat(ds, cfg.extra_rows)
    for problem in ds.problems[:20]:
        log(f"skipped {problem}")
    if len(ds.problems) > 20:
        log(f"... and {len(ds.problems) - 20} more bad rows")
    rows_read = len(ds)
    if cfg.max_rows is not None and len(ds) > cfg.max_rows:
        keep = stratified_sample(ds.labels, cfg.max_rows, cfg.seed)
        log(f"--max-rows {cfg.max_rows}: a stratified sample of {len(ds)} rows, per tier")
        ds = ds.subset(_mask(keep, ds))
    held = _held_out(cfg, ds)
    train_ds, test_ds = ds.subset(~held), ds.subset(held)
    clock["load"] = time.perf_counter()

    embedder = build_embedder(
        cfg.embedder, cfg.embedder_path, progress=cfg.progress, work_dir=cfg.out.parent
    )
    x_train, tokens_train = embedder.encode_with_counts(train_ds.texts, progress=cfg.progress)
    clock["embed"] = time.perf_counter()

    clf = TierClassifier(
        train_ds.ladder.names,
        seed=cfg.seed,
        class_weight=cfg.class_weight,
        selection_rows=cfg.selection_rows,
        include_top=True,
    )
    clf.fit(x_train, train_ds.sufficient, train_ds.weights)
    # Out-of-fold predictions (threshold, lambda, the quality table, the head family, the
    # answer-length models and validation figures) on a stratified sample: settings that are
    # single numbers are stable long before every row of a big set is refitted 5x.
    val = stratified_sample(outcome_strata(train_ds.sufficient), cfg.selection_rows, cfg.seed)
    val_ds = train_ds if len(val) == len(train_ds) else train_ds.subset(_mask(val, train_ds))
    x_val = x_train if len(val) == len(train_ds) else x_train[val]
    cost_val = fill_costs(val_ds, tokens_train[val])
    oof_raw = clf.out_of_fold(x_val, val_ds.sufficient, val_ds.weights, raw=True)
    cal = _scored_rows(cfg, val_ds)
    costs = fit_costs(
        val_ds.ladder,
        embedder.spec.token_cap,
        x_val,
        val_ds,
        tokens_train[val],
        count_tokens(untruncated_counter(embedder.token_counter), val_ds.texts),
        cfg.seed,
    )
    choice = choose_heads(
        cfg.head, clf, oof_raw, x_val, val_ds, costs, cal, embedder.spec.dim, cfg.seed, log
    )
    clf, oof_raw = choice.classifier, choice.oof_raw
    oof = monotone_p_sufficient(oof_raw[:, : len(train_ds.ladder) - 1])
    threshold = calibrate_threshold(oof[cal], val_ds.quality[cal], cost_val[cal], cfg.target)
    decision = fit_decision(
        cfg.decision, costs, val_ds, oof_raw, cal, cfg.target.quality_share, threshold
    )
    metrics: dict[str, Any] = {
        "validation": _split_metrics(oof[cal], val_ds.subset(cal), cost_val[cal], threshold)
    }
    metrics["validation"]["method"] = (
        f"{choice.logreg.folds}-fold out-of-fold predictions on train rows"
    )
    if len(val_ds) < len(train_ds):
        metrics["validation"]["method"] += f" (a stratified sample of {len(val_ds)})"
    scored_test = _scored_rows(cfg, test_ds, fallback=False)
    if scored_test.any():
        # embedded only now, after the heads are fitted: the fit's scaled copy of the train
        # rows and these features are never in memory together
        scored = test_ds.subset(scored_test)
        x_test, tokens_test = embedder.encode_with_counts(scored.texts, progress=False)
        cost_test = fill_costs(scored, tokens_test)
        metrics["test"] = _split_metrics(clf.p_sufficient(x_test), scored, cost_test, threshold)
        metrics["test"]["rules"] = held_out_figures(
            decision, clf.p_tier(x_test), x_test, scored, tokens_test
        )
        metrics["test"]["method"] = (
            "explicit held-out rows, never trained on"
            if cfg.holdout_mask
            else "fixed hash split (sha256(id) % 5 == 0), never trained on"
        )
    if cfg.score_complete_rows:
        for split in metrics.values():
            split["method"] += "; rows with every tier's outcome known"
    clock["fit"] = time.perf_counter()

    result = _write_bundle(
        cfg, ds, train_ds, test_ds, embedder, choice, x_train, decision, metrics, rows_read
    )
    clock["export"] = time.perf_counter()
    seconds = {
        k: round(clock[k] - clock[p], 3)
        for p, k in zip(
            ("start", "load", "embed", "fit"), ("load", "embed", "fit", "export"), strict=True
        )
    }
    seconds["total"] = round(clock["export"] - clock["start"], 3)
    return TrainResult(cfg.out, result, len(train_ds), len(test_ds), seconds)


def _mask(idx: np.ndarray, ds: Dataset) -> np.ndarray:
    mask = np.zeros(len(ds), bool)
    mask[idx] = True
    return mask


def _held_out(cfg: TrainConfig, ds: Dataset) -> np.ndarray:
    if cfg.holdout_mask is not None:
        held = np.asarray(cfg.holdout_mask(ds), dtype=bool)
        if held.shape != (len(ds),):
            raise ValueError(f"holdout_mask gave shape {held.shape} for {len(ds)} rows")
        return held
    return split_holdout(ds.ids) if cfg.holdout else np.zeros(len(ds), bool)


def _scored_rows(cfg: TrainConfig, ds: Dataset, fallback: bool = True) -> np.ndarray:
    """Rows the threshold and metrics use: all, or (if asked) the complete ones; with none
    complete, all rows when `fallback` (the threshold needs rows), else none."""
    if not cfg.score_complete_rows:
        return np.ones(len(ds), bool)
    complete = ~np.isnan(ds.quality).any(axis=1)
    return complete if complete.any() or not fallback else np.ones(len(ds), bool)


def concat(a: Dataset, b: Dataset) -> Dataset:
    return Dataset(
        a.ladder,
        a.ids + b.ids,
        a.texts + b.texts,
        np.vstack([a.quality, b.quality]),
        np.vstack([a.cost, b.cost]),
        a.groups + b.groups,
        a.sources + b.sources,
        np.concatenate([a.weights, b.weights]),
        a.times + b.times,
        a.inputs + b.inputs,
        a.problems + b.problems,
        a.dropped_unsolved + b.dropped_unsolved,
    )


def _write_bundle(
    cfg: TrainConfig,
    ds: Dataset,
    train_ds: Dataset,
    test_ds: Dataset,
    embedder: TrainingEmbedder,
    choice: HeadChoice,
    x_train: np.ndarray,
    decision: DecisionFit,
    metrics: dict[str, Any],
    rows_read: int,
) -> Manifest:
    clf, logreg = choice.classifier, choice.logreg
    graph = correctness_to_onnx(clf.heads, decision.lengths.models, embedder.spec.n_features)
    x = x_train[:256]
    parity = check_parity(graph, clf.p_tier(x), x, output=CORRECT)
    # No tier's answer length learned: no lengths output, serving uses output_tokens.
    lengths: dict[str, Any] = {}
    if has_output(graph, LENGTHS):
        diff = check_parity(graph, decision.lengths.log_tokens(x), x, atol=1e-3, output=LENGTHS)
        lengths = {"lengths_output": LENGTHS, "lengths_onnx_parity_max_abs_diff": diff}
    created = _now()
    name = cfg.name or cfg.out.name
    with atomic_bundle_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        (tmp / CLASSIFIER).write_bytes(graph.SerializeToString())
        embedder.write_files(tmp)
        extras = tmp / TRAINING_DIR
        extras.mkdir()
        joblib.dump(
            {"heads": clf.heads, "tiers": clf.tier_names, "lengths": decision.lengths.models},
            extras / "heads.joblib",
        )
        (extras / "train_ids.json").write_text(json.dumps(train_ds.ids))
        files = {f: sha256_file(tmp / f) for f in [CLASSIFIER, *embedder.files]}
        manifest = Manifest(
            name=name,
            version=f"{name}@{created.strftime('%Y%m%dT%H%M%SZ')}",
            created_at=created.isoformat(),
            ladder=ds.ladder,
            embedder=embedder.spec,
            threshold=decision.threshold,
            threshold_target=cfg.target.to_dict(),
            classifier={
                "file": CLASSIFIER,
                "input": INPUT,
                "output": CORRECT,
                "algorithm": f"per-tier heads of family {choice.family.value}, every tier: "
                "p_correct = P(tier answers well); p_sufficient = running max of the non-top "
                "tiers' p_correct along the ladder, top tier = 1.0",
                "family": choice.family.value,
                "family_choice": choice.figures,
                "class_weight": cfg.class_weight.value,
                "logreg_C": dict(zip(logreg.tier_names, logreg.best_c, strict=True)),
                "logreg_cv_roc_auc": dict(zip(logreg.tier_names, logreg.cv_auc, strict=True)),
                "seed": cfg.seed,
                "onnx_parity_max_abs_diff": parity,
                **lengths,
                # P(sufficient) of the tiers whose known outcomes were all one class: folded
                # into the graph as zero-weight columns (no node), listed here for readers.
                "constant_heads": {
                    tier: h.p
                    for tier, h in zip(clf.tier_names, clf.heads, strict=True)
                    if isinstance(h, ConstantHead)
                },
                "graph_nodes": len(graph.graph.node),
            },
            data={
                "inputs": [asdict(i) for i in ds.inputs],
                "bad_rows": len(ds.problems),
                "dropped_unsolved": ds.dropped_unsolved,
                "label_policy": {
                    "pass_mark": ds.ladder.pass_mark,
                    "unsolved": ds.ladder.unsolved.value,
                    "target": "per-tier sufficiency (score >= pass_mark), unknown outcomes masked",
                },
                "rows": {"train": len(train_ds), "test": len(test_ds)},
                "sampling": {
                    "rows_read": rows_read,
                    "max_rows": cfg.max_rows,
                    "selection_rows": cfg.selection_rows,
                    "note": "C's CV and the threshold's out-of-fold predictions use a stratified "
                    "sample of at most selection_rows train rows; heads fit on every train row",
                },
                "rows_per_tier": {
                    "train": train_ds.rows_per_tier(),
                    "test": test_ds.rows_per_tier() if len(test_ds) else {},
                },
            },
            metrics=metrics,
            versions=library_versions(),
            files=files,
            lineage=cfg.lineage,
            decision=decision.manifest_decision(),
            cost_model=decision.manifest_cost_model(),
        )
        write_manifest(tmp, manifest)
        _check_served_parity(tmp, clf, embedder, decision, train_ds.texts[:64])
    return manifest


def _check_served_parity(
    bundle: Path,
    clf: Any,
    embedder: TrainingEmbedder,
    decision: DecisionFit,
    texts: list[str],
) -> None:
    """Refuse to publish a bundle whose serving runtime disagrees with the training pipeline:
    probabilities, and the cost estimates the utility rule decides on."""
    router = Router.load(bundle)
    x = embedder.encode(texts, progress=False)
    got = router.estimates(texts)
    np.testing.assert_allclose(
        got.p_sufficient, clf.p_sufficient(x), atol=2e-3, err_msg="served bundle != sklearn"
    )
    assert got.p_correct is not None
    np.testing.assert_allclose(got.p_correct, clf.p_tier(x), atol=2e-3, err_msg="p_correct")
    from serve.model.policy import tokens_from_log

    n_in = input_tokens(decision.cost_model, embedder.token_counts(texts), texts)
    want = decision.cost_model.costs(n_in, tokens_from_log(decision.lengths.log_tokens(x)))
    np.testing.assert_allclose(got.cost, want, rtol=1e-2, atol=1e-9, err_msg="served costs")
