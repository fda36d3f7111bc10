"""Replay outcome data as a gateway cascade and write the escalation logs it would produce.

Each request is routed with the model (through the serving runtime), tried on the routed
tier, and escalated one tier at a time on failure until a tier succeeds or the top tier has
been tried. With exploration, a seeded share of requests start one tier below the model's
decision and are flagged `"explore": true`, as the server does with `RUNG_EXPLORE_RATE`.
Requests are replayed in a seeded random order (real traffic interleaves sources) with
timestamps `interval_s` apart. For demos, tests and benchmarks.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.errors import RungError
from serve.model.ladder import Ladder
from serve.model.runtime import Router
from train.data.load import load_dataset
from train.data.types import SourceFormat

BATCH = 512
DEFAULT_START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class SimulateError(RungError):
    """The simulation cannot run: bad options or a ladder that does not fit the model."""


@dataclass(frozen=True)
class SimConfig:
    outcomes: list[str]
    model: Path
    out: Path
    ladder: Ladder | None = None  # default: the model's ladder (model columns and prices)
    explore: float = 0.0
    seed: int = 0
    fmt: SourceFormat | None = None
    threshold: float | None = None  # default: the model's calibrated threshold
    start: dt.datetime = DEFAULT_START
    interval_s: float = 1.0


@dataclass
class SimSummary:
    requests: int = 0
    explore: int = 0
    attempts: int = 0
    escalations: int = 0
    solved: int = 0
    cost_usd: float = 0.0
    skipped: list[str] = field(default_factory=list)  # "id: reason"
    routed: Counter = field(default_factory=Counter)  # first tier tried
    answered: Counter = field(default_factory=Counter)  # tier that succeeded

    def lines(self) -> list[str]:
        out = [
            f"{self.requests} requests ({self.explore} explore), {self.attempts} attempts, "
            f"{self.escalations} escalations, {self.solved} solved, cost ${self.cost_usd:.4g}",
            f"first tier tried: {dict(self.routed)}; succeeded at: {dict(self.answered)}",
        ]
        if self.skipped:
            out.append(
                f"skipped {len(self.skipped)} rows whose outcome on a tier the cascade "
                f"needed is unknown, e.g. {self.skipped[0]}"
            )
        return out


def cascade(quality: np.ndarray, start: int, pass_mark: float) -> list[tuple[int, bool]] | None:
    """[(tier, success)] from `start` up to the first success or the top; None if an outcome
    the cascade needs is unknown (the replay cannot say what the gateway would have seen)."""
    out = []
    for tier in range(start, len(quality)):
        q = quality[tier]
        if math.isnan(q):
            return None
        ok = bool(q >= pass_mark)
        out.append((tier, ok))
        if ok:
            break
    return out


def _ladder(cfg: SimConfig, router: Router) -> Ladder:
    ladder = cfg.ladder or router.manifest.ladder
    if ladder.names != router.tier_names:
        raise SimulateError(
            f"the ladder's tiers {ladder.names} differ from the model's {router.tier_names}"
        )
    return ladder


def _check(cfg: SimConfig) -> None:
    if not 0.0 <= cfg.explore < 1.0:
        raise SimulateError(f"--explore must lie in [0, 1), got {cfg.explore}")
    if cfg.threshold is not None and not 0.0 <= cfg.threshold <= 1.0:
        raise SimulateError(f"threshold must lie in [0, 1], got {cfg.threshold}")
    if cfg.interval_s <= 0:
        raise SimulateError("interval_s must be > 0")


def _record(
    rid: str,
    ts: dt.datetime,
    text: str,
    routed: str,
    version: str,
    explore: bool,
    attempts: list[dict[str, Any]],
) -> str:
    return json.dumps(
        {
            "request_id": rid,
            "ts": ts.isoformat().replace("+00:00", "Z"),
            "text": text,
            "routed_tier": routed,
            "model_version": version,
            "explore": explore,
            "attempts": attempts,
        }
    )


def simulate(cfg: SimConfig) -> SimSummary:
    """Write one request line per replayed row to cfg.out; returns what happened."""
    _check(cfg)
    router = Router.load(cfg.model)
    ladder = _ladder(cfg, router)
    ds = load_dataset(cfg.outcomes, ladder, cfg.fmt, apply_policy=False)
    texts = ds.texts
    # The bundle's own rule at its default setting (utility or threshold), or the threshold
    # rule at an explicit --threshold: the decisions a gateway would get from /classify.
    setting = router.setting(threshold=cfg.threshold)
    decisions = np.concatenate(
        [
            router.decide(router.estimates(texts[i : i + BATCH]), setting)
            for i in range(0, len(texts), BATCH)
        ]
    ).astype(int)
    counts = np.concatenate(
        [router.embedder.embed(texts[i : i + BATCH])[1] for i in range(0, len(texts), BATCH)]
    )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(ds))
    explore_draw = rng.random(len(ds)) < cfg.explore  # drawn per row, fixed by the seed
    summary = SimSummary()
    version = router.manifest.version
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.out.with_name(cfg.out.name + ".tmp")
    used: Counter = Counter()
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in order:
            explore = bool(explore_draw[i] and decisions[i] > 0)
            start = int(decisions[i]) - explore
            steps = cascade(ds.quality[i], start, ladder.pass_mark)
            if steps is None:
                summary.skipped.append(
                    f"{ds.ids[i]}: unknown outcome on the way up from {ladder.names[start]}"
                )
                continue
            attempts = []
            for tier, ok in steps:
                cost = ds.cost[i, tier]
                if math.isnan(cost):
                    cost = ladder.tiers[tier].estimate_cost(float(counts[i]))
                attempts.append(
                    {
                        "tier": ladder.names[tier],
                        "outcome": "success" if ok else "failure",
                        "cost_usd": round(float(cost), 10),
                    }
                )
                summary.cost_usd += float(cost)
            rid = ds.ids[i] if not used[ds.ids[i]] else f"{ds.ids[i]}#{used[ds.ids[i]]}"
            used[ds.ids[i]] += 1
            ts = cfg.start + dt.timedelta(seconds=summary.requests * cfg.interval_s)
            fh.write(
                _record(rid, ts, texts[i], ladder.names[start], version, explore, attempts) + "\n"
            )
            summary.requests += 1
            summary.explore += explore
            summary.attempts += len(steps)
            summary.escalations += len(steps) - 1
            summary.routed[ladder.names[start]] += 1
            if steps[-1][1]:
                summary.solved += 1
                summary.answered[ladder.names[steps[-1][0]]] += 1
    if not summary.requests:
        tmp.unlink()
        raise SimulateError("no row could be replayed: every one needs an unknown outcome")
    tmp.replace(cfg.out)
    return summary
