"""Retraining from escalation logs: merge, hold out the newest logs, train, gate, promote.

The candidate trains on the base model's training data (found through its manifest) plus the
log rows, except the newest `holdout_share` of logs by timestamp, which neither model has
seen. Both models are scored on those held-out requests by `train.evaluation.gate` (which
counts tiers cheaper than a failed tier as failed, `implied_outcomes`); `models/current` moves
only if the candidate is not worse, or when forced (recorded in the manifest).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.bundle import MANIFEST, Manifest, sha256_file
from serve.model.registry import set_current
from serve.model.runtime import Router
from train.data.files import expand_paths
from train.data.logs import LogError
from train.data.logset import LogSet, LogSummary, load_logs, newest_mask
from train.data.types import Dataset, SourceFormat, fill_costs, split_holdout
from train.evaluation.gate import Decision, Figures, GateCriterion, Verdict, figures, judge
from train.fit.heads import ClassWeight
from train.fit.pipeline import TrainConfig, TrainResult, train_bundle
from train.fit.threshold import ThresholdTarget

DEFAULT_HOLDOUT_SHARE = 0.2
BATCH = 512


class RetrainError(LogError):
    """Retraining cannot start: missing base data, logs already used, bad options."""


@dataclass
class RetrainConfig:
    base: Path
    logs: list[str]
    out: Path
    data: list[str] | None = None  # overrides the base manifest's data.inputs
    promote: bool = False
    force: bool = False  # promote whatever the gate says; recorded in the manifest
    holdout_share: float = DEFAULT_HOLDOUT_SHARE
    criterion: GateCriterion = field(default_factory=GateCriterion)
    seed: int = 0
    progress: bool = False
    overwrite: bool = False


@dataclass
class RetrainResult:
    bundle: Path
    manifest: Manifest
    base: Manifest
    logs: LogSummary
    holdout_rows: int
    base_figures: Figures
    candidate_figures: Figures
    decision: Decision
    promoted: bool
    forced: bool
    warnings: list[str]
    train: TrainResult
    criterion: GateCriterion = field(default_factory=GateCriterion)


# ---------------------------------------------------------------- base data


def _locate(item: dict) -> Path:
    """The recorded absolute path if it still exists, else the path as given (cwd-relative)."""
    resolved = Path(item.get("abs_path") or "")
    return resolved if item.get("abs_path") and resolved.is_file() else Path(item.get("path", ""))


def base_data(
    base: Manifest, override: list[str] | None
) -> tuple[list[str], str | None, list[str]]:
    """(paths, format or None for per-file detection, warnings) of the base training data."""
    if override:
        return list(override), None, []
    inputs = base.data.get("inputs") or []
    if not inputs:
        raise RetrainError(
            f"the base manifest ({base.version}) records no training inputs; pass --data"
        )
    paths, formats, warnings = [], set(), []
    for item in inputs:
        path = _locate(item)
        if not path.is_file():
            warnings.append(f"base training file {path} no longer exists; it is left out")
            continue
        if item.get("sha256") and sha256_file(path) != item["sha256"]:
            warnings.append(
                f"base training file {path} changed since the base was trained "
                "(sha256 differs); using it as it is now"
            )
        paths.append(str(path))
        formats.add(item.get("format"))
    if not paths:
        raise RetrainError(
            "none of the base model's training files exist any more "
            f"({', '.join(str(i.get('path')) for i in inputs)}); pass --data"
        )
    fmt = formats.pop() if len(formats) == 1 else None
    return paths, fmt, warnings


def _check_logs_are_new(logs: list[str], base: Manifest) -> None:
    used = {i.get("sha256"): i.get("path") for i in base.data.get("inputs") or []}
    for path in expand_paths(list(logs)):
        digest = sha256_file(path)
        if digest in used:
            raise RetrainError(
                f"{path} was already used to train the base model (same sha256 "
                f"as {used[digest]}); pass logs it has not seen"
            )


def _holdout(base: Manifest, logs: LogSet, share: float) -> tuple[np.ndarray, Any]:
    """Held-out log rows, and the mask function for the merged data (base rows first)."""
    log_mask = newest_mask(logs.dataset.times, share)
    hash_split = bool(base.data.get("rows", {}).get("test"))

    def mask(ds: Dataset) -> np.ndarray:
        n_base = len(ds) - len(log_mask)
        base_ids = ds.ids[:n_base]
        base_mask = split_holdout(base_ids) if hash_split else np.zeros(n_base, bool)
        return np.concatenate([base_mask, log_mask])

    return log_mask, mask


# ---------------------------------------------------------------- gate


def _costs(ds: Dataset, router: Router) -> np.ndarray:
    counts = (
        np.concatenate(
            [router.embedder.embed(ds.texts[i : i + BATCH])[1] for i in range(0, len(ds), BATCH)]
        )
        if len(ds)
        else np.zeros(0)
    )
    return fill_costs(ds, counts)


def _p(router: Router, texts: list[str]) -> np.ndarray:
    return np.concatenate(
        [router.p_sufficient(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    )


def gate_models(
    candidate: Router, base: Router, rows: Dataset, criterion: GateCriterion
) -> tuple[Figures, Figures, Decision]:
    """Score both models on the same rows (with the same costs) and judge."""
    cost = _costs(rows, base)
    pass_mark = rows.ladder.pass_mark
    fb = figures(
        _p(base, rows.texts), rows.quality, cost, base.manifest.threshold, pass_mark, criterion
    )
    fc = figures(
        _p(candidate, rows.texts),
        rows.quality,
        cost,
        candidate.manifest.threshold,
        pass_mark,
        criterion,
    )
    return fc, fb, judge(fc, fb, criterion)


# ---------------------------------------------------------------- the whole run


def _write_manifest_atomic(bundle: Path, manifest: Manifest) -> None:
    tmp = bundle / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", "utf-8")
    os.replace(tmp, bundle / MANIFEST)


def _lineage(
    cfg: RetrainConfig,
    base: Manifest,
    base_dir: Path,
    logs: LogSet,
    held: int,
    fc: Figures,
    fb: Figures,
    decision: Decision,
    promoted: bool,
) -> dict[str, Any]:
    return {
        "kind": "retrain",
        "base": {"name": base.name, "version": base.version, "path": str(base_dir)},
        "logs": [
            {"path": i.path, "sha256": i.sha256, "requests": i.rows, "bad_lines": i.bad_rows}
            for i in logs.dataset.inputs
        ],
        "log_summary": logs.summary.to_dict(),
        "holdout": {
            "rule": f"newest {cfg.holdout_share:.0%} of log requests by ts, never trained on",
            "requests": held,
        },
        "gate": {
            "criterion": cfg.criterion.to_dict(),
            "verdict": decision.verdict.value,
            "reason": decision.reason,
            "candidate": fc.to_dict(),
            "base": fb.to_dict(),
            "rows": "held-out requests whose outcome is known on every tier (cost) and "
            "known (request, tier) pairs (ECE), after inferring that tiers cheaper than a "
            "failed tier fail too (ladder order; evaluation only)"
            if cfg.criterion.infer_cheaper_failures
            else "held-out requests whose outcome is known on every tier (cost); "
            "known (request, tier) pairs (ECE)",
        },
        "forced": cfg.force,
        "promoted": promoted,
    }


def retrain(cfg: RetrainConfig, log: Any = print) -> RetrainResult:
    if not 0.0 < cfg.holdout_share < 1.0:
        raise RetrainError(f"holdout share must lie in (0, 1), got {cfg.holdout_share}")
    if cfg.out.exists() and not cfg.overwrite:
        raise RetrainError(f"{cfg.out} already exists; choose another name or pass --overwrite")
    if cfg.promote or cfg.force:
        _check_same_models_dir(Path(cfg.base), cfg.out, log)
    base_dir = Path(cfg.base).resolve()
    base_router = Router.load(base_dir)
    base = base_router.manifest
    ladder = base.ladder
    _check_logs_are_new(cfg.logs, base)
    paths, fmt, warnings = base_data(base, cfg.data)
    for w in warnings:
        log(f"warning: {w}")
    logs = load_logs(cfg.logs, ladder)
    for problem in logs.dataset.problems[:20]:
        log(f"skipped {problem}")
    if len(logs.dataset.problems) > 20:
        log(f"... and {len(logs.dataset.problems) - 20} more malformed log lines")
    for line in logs.summary.lines():
        log(line)
    held, mask = _holdout(base, logs, cfg.holdout_share)
    tcfg = TrainConfig(
        data=paths,
        out=cfg.out,
        ladder=ladder,
        embedder=_embedder(base),
        fmt=SourceFormat(fmt) if fmt else None,
        target=ThresholdTarget(float(base.threshold_target.get("quality_share", 0.95))),
        class_weight=ClassWeight(base.classifier.get("class_weight", ClassWeight.NONE.value)),
        seed=cfg.seed,
        progress=cfg.progress,
        overwrite=cfg.overwrite,
        extra_rows=logs.dataset,
        holdout_mask=mask,
        score_complete_rows=True,
    )
    result = train_bundle(tcfg, log=log)
    candidate = Router.load(cfg.out)
    fc, fb, decision = gate_models(candidate, base_router, logs.dataset.subset(held), cfg.criterion)
    promote = cfg.force or (cfg.promote and decision.accept)
    manifest = dataclasses.replace(
        result.manifest,
        lineage=_lineage(cfg, base, base_dir, logs, int(held.sum()), fc, fb, decision, promote),
    )
    _write_manifest_atomic(cfg.out, manifest)
    if promote:
        set_current(
            cfg.out.parent, cfg.out.name, reason="retrain --force" if cfg.force else "retrain"
        )
    return RetrainResult(
        cfg.out,
        manifest,
        base,
        logs.summary,
        int(held.sum()),
        fb,
        fc,
        decision,
        promote,
        cfg.force,
        warnings,
        result,
        cfg.criterion,
    )


def _check_same_models_dir(base: Path, out: Path, log: Any) -> None:
    if base.is_symlink() and base.parent.resolve() != out.parent.resolve():
        log(f"warning: promotion switches {out.parent}/current, not {base} (the --base link)")


def _embedder(base: Manifest) -> Any:
    from train.embedders.base import MINILM_ID, EmbedderChoice

    if base.embedder.kind.value == "transformer" and MINILM_ID not in base.embedder.source:
        raise RetrainError(
            f"the base uses a custom transformer ({base.embedder.source}); "
            "retraining supports the static and shipped MiniLM embedders"
        )
    return EmbedderChoice(base.embedder.kind.value)


def outcome_text(res: RetrainResult, promote_requested: bool) -> list[str]:
    """What was decided and why, for the terminal."""
    fc, fb = res.candidate_figures, res.base_figures
    lines = [
        f"candidate {res.bundle} ({res.manifest.version}) vs base {res.base.version}",
        f"held out: newest {res.holdout_rows} log requests; {fc.observed_rows} have every "
        "tier's outcome observed, "
        + (
            f"{fc.rows} once tiers cheaper than a failed tier count as failed (ladder order)"
            if res.criterion.infer_cheaper_failures
            else f"{fc.rows} are used (no inference from the ladder order)"
        )
        + f"; those score the cost criterion, {fc.ece_pairs} known (request, tier) pairs "
        "score calibration",
    ]
    if fc.cheapest_sufficient:
        names = [*res.base.ladder.names, "no tier"]
        lines.append(
            "  scored requests by cheapest sufficient tier: "
            + ", ".join(f"{t} {n}" for t, n in zip(names, fc.cheapest_sufficient, strict=True))
        )
    for name, f in (("base", fb), ("candidate", fc)):
        lines.append(
            f"  {name:9s} cost at {f.target_quality:.3f} quality: "
            f"${f.cost_at_target:.4g} ({f.cost_share_of_top:.1%} of always-top); "
            f"ECE {f.ece:.3f}; at its threshold {f.threshold:.3f}: quality "
            f"{f.quality_at_threshold:.3f}, cost ${f.cost_at_threshold:.4g}"
        )
    verdict = {
        Verdict.BETTER: "not worse (better)",
        Verdict.TIE: "not worse (tie)",
        Verdict.WORSE: "worse",
        Verdict.UNKNOWN: "not judged",
    }[res.decision.verdict]
    lines.append(f"gate: candidate is {verdict}: {res.decision.reason}")
    models_dir = res.bundle.parent
    if res.forced:
        lines.append(
            f"promoted by --force: {models_dir}/current -> {res.bundle.name} "
            f"(gate said {res.decision.verdict.value}; recorded in the manifest)"
        )
    elif res.promoted:
        lines.append(f"promoted: {models_dir}/current -> {res.bundle.name}")
    elif promote_requested:
        lines.append(f"not promoted: {models_dir}/current is unchanged (--force overrides)")
    else:
        lines.append("not promoted (pass --promote to switch models/current when the gate passes)")
    return lines
