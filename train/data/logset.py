"""Escalation logs loaded for retraining, with what they say about each tier.

`load_logs` reads log files through `train.data.logs`, keeps one row per request (unknown tiers
NaN, timestamps kept for the newest-logs held-out slice) and counts, per tier, how many
requests carried information about it. Logs that teach nothing are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.bundle import sha256_file
from serve.model.ladder import Ladder, UnsolvedPolicy
from train.data.files import expand_paths
from train.data.logs import (
    HASH_ONLY,
    HASH_ONLY_HELP,
    Labels,
    LogError,
    LogRequest,
    derive_labels,
    read_request_files,
    to_row,
)
from train.data.types import Dataset, InputFile, RawRow, RowProblem, SourceFormat


@dataclass
class LogSummary:
    """What the logs say, per tier: how many requests carried information about it."""

    tiers: list[str]
    requests: int = 0
    explore: int = 0
    bad_lines: int = 0
    hash_only: int = 0  # requests logged without their text: refused for training, reported
    duplicates: int = 0
    conflicts: int = 0
    order_violations: int = 0
    dropped_unsolved: int = 0
    informative: int = 0  # requests with a known outcome below the top tier: they teach a head
    known: list[int] = field(default_factory=list)  # rows whose tier-t outcome is known
    observed: list[int] = field(default_factory=list)  # ... because tier t was tried
    sufficient: list[int] = field(default_factory=list)
    insufficient: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        per_tier = {
            t: {"known": k, "tried": o, "sufficient": s, "insufficient": i}
            for t, k, o, s, i in zip(
                self.tiers,
                self.known,
                self.observed,
                self.sufficient,
                self.insufficient,
                strict=True,
            )
        }
        return {
            "requests": self.requests,
            "informative_requests": self.informative,
            "explore_requests": self.explore,
            "bad_lines": self.bad_lines,
            "hash_only_requests": self.hash_only,
            "duplicate_requests": self.duplicates,
            "conflicting_tiers": self.conflicts,
            "order_violations": self.order_violations,
            "dropped_unsolved": self.dropped_unsolved,
            "per_tier": per_tier,
        }

    def lines(self) -> list[str]:
        """Human-readable report, one fact per line."""
        out = [
            f"{self.requests} requests ({self.explore} explore), {self.informative} carry "
            f"information about a tier below the top; {self.bad_lines} malformed lines, "
            f"{self.duplicates} duplicate requests skipped"
        ]
        if self.hash_only:
            out.append(f"  {self.hash_only} requests skipped: {HASH_ONLY}; {HASH_ONLY_HELP}")
        for t, k, o, s, i in zip(
            self.tiers, self.known, self.observed, self.sufficient, self.insufficient, strict=True
        ):
            out.append(
                f"  {t}: known on {k} requests ({o} tried): {s} sufficient, {i} insufficient"
            )
        if self.conflicts or self.order_violations:
            out.append(
                f"  {self.conflicts} requests with a tier that both failed and succeeded "
                f"(left unknown), {self.order_violations} with a failure above a cheaper "
                f"success (kept as observed)"
            )
        return out


@dataclass
class LogSet:
    dataset: Dataset
    summary: LogSummary
    requests: list[LogRequest]


def _known_unsolved(quality: list[float], ladder: Ladder) -> bool:
    """Known to be solved by no tier: the top tier failed and nothing succeeded."""
    top = quality[-1]
    return (
        not math.isnan(top)
        and top < ladder.pass_mark
        and not any(q >= ladder.pass_mark for q in quality if not math.isnan(q))
    )


def load_logs(paths: list[str | Path], ladder: Ladder) -> LogSet:
    """Read log files into a Dataset (time-stamped, unknown tiers NaN) and count what they say.

    Raises LogError when no request carries information about any tier below the top.
    """
    summary = LogSummary(
        ladder.names,
        known=[0] * len(ladder),
        observed=[0] * len(ladder),
        sufficient=[0] * len(ladder),
        insufficient=[0] * len(ladder),
    )
    rows: list[RawRow] = []
    sources: list[str] = []
    kept: list[LogRequest] = []
    problems: list[RowProblem] = []
    inputs: list[InputFile] = []
    seen: set[str] = set()
    files = expand_paths(paths)
    good = dict.fromkeys(files, 0)
    bad = dict.fromkeys(files, 0)
    for path, item in read_request_files(files, ladder):
        if isinstance(item, RowProblem):
            problems.append(item)
            bad[path] += 1
            continue
        if item.request_id in seen:
            summary.duplicates += 1
            bad[path] += 1
            problems.append(
                RowProblem(
                    str(path),
                    item.line,
                    f"request_id {item.request_id!r} already read from another file",
                )
            )
            continue
        seen.add(item.request_id)
        labels = derive_labels(item.attempts, len(ladder))
        if ladder.unsolved is UnsolvedPolicy.DROP and _known_unsolved(labels.quality, ladder):
            summary.dropped_unsolved += 1
            continue
        _count(summary, item, labels, ladder.pass_mark)
        rows.append(to_row(item, ladder))
        sources.append(str(path))
        kept.append(item)
        good[path] += 1
    for path in files:
        inputs.append(
            InputFile(
                str(path),
                sha256_file(path),
                SourceFormat.LOGS.value,
                good[path],
                bad[path],
                str(Path(path).resolve()),
            )
        )
    summary.hash_only = sum(HASH_ONLY in p.reason for p in problems)
    summary.bad_lines = len(problems) - summary.duplicates - summary.hash_only
    if not rows and summary.hash_only:
        raise LogError(
            f"the logs hold {summary.hash_only} requests {HASH_ONLY} and no request with its "
            f"text: {HASH_ONLY_HELP}. Hash-only lines are never used for training"
        )
    if not rows:
        detail = "; ".join(map(str, problems[:3]))
        raise LogError(
            f"no usable requests in {[i.path for i in inputs]}"
            + (f" ({len(problems)} malformed lines, e.g. {detail})" if problems else "")
        )
    if summary.informative == 0:
        raise LogError(
            f"the logs hold {summary.requests} requests but none says whether a tier below "
            f"the top ({', '.join(ladder.names[:-1])}) would do: every request went straight "
            "to the top tier. Nothing to learn; enable exploration (RUNG_EXPLORE_RATE) or "
            "collect more logs"
        )
    ds = Dataset(
        ladder,
        [r.id for r in rows],
        [r.text for r in rows],
        np.array([r.quality for r in rows], dtype=float),
        np.array([r.cost for r in rows], dtype=float),
        [r.group for r in rows],
        sources,
        np.ones(len(rows)),
        [r.time for r in rows],
        inputs,
        problems,
        summary.dropped_unsolved,
    )
    return LogSet(ds, summary, kept)


def _count(summary: LogSummary, req: LogRequest, labels: Labels, pass_mark: float) -> None:
    summary.requests += 1
    summary.explore += req.explore
    summary.conflicts += labels.conflict
    summary.order_violations += labels.order_violation
    informative = False
    for t, (q, seen) in enumerate(zip(labels.quality, labels.observed, strict=True)):
        if math.isnan(q):
            continue
        summary.known[t] += 1
        summary.observed[t] += seen
        if q >= pass_mark:
            summary.sufficient[t] += 1
        else:
            summary.insufficient[t] += 1
        informative |= t < len(labels.quality) - 1
    summary.informative += informative


def newest_mask(times: list[str], share: float) -> np.ndarray:
    """True for the newest `share` of rows by timestamp (ties broken by position)."""
    if not 0.0 < share < 1.0:
        raise LogError(f"held-out share must lie in (0, 1), got {share}")
    n = len(times)
    order = sorted(range(n), key=lambda i: (times[i], i))
    k = max(1, round(share * n)) if n > 1 else 0
    mask = np.zeros(n, bool)
    mask[order[n - k :]] = True
    return mask
