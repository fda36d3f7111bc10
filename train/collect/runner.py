"""Running a collection: every (prompt, tier) pair not yet in the journal, under per-tier
concurrency caps and a budget, then the outcome table and the summary.

`--mode all` runs every tier on every prompt, each tier with its own pool of workers so a slow
tier never holds up a fast one. `--mode cascade` walks each prompt bottom-up and stops at the
first tier that passes; the tiers above stay unknown (blank in the table), the censoring of
escalation logs that training masks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from serve.model.ladder import Ladder, Tier
from train.collect.caller import RetryPolicy, TierCaller
from train.collect.journal import Journal, Record
from train.collect.prompts import CollectError, Prompt
from train.collect.scorers import Score, Scorer, ScorerKind

FAIL_FAST = 5  # a tier's first calls that all fail for good before the run stops


class Mode(str, Enum):
    ALL = "all"
    CASCADE = "cascade"


class Progress(Protocol):
    def start(self, total: int, unit: str) -> None: ...
    def advance(self, calls: int, errors: int, spend: float) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int, unit: str) -> None:
        pass

    def advance(self, calls: int, errors: int, spend: float) -> None:
        pass

    def close(self) -> None:
        pass


class Budget:
    """Reserve an estimate before each call, settle with the actual spend after: a call that
    could take the spend past the cap is never started; the calls in flight finish."""

    def __init__(self, limit: float | None, spent: float = 0.0):
        self.limit = limit
        self.spent = spent
        self.reserved = 0.0
        self.stopped = False

    def reserve(self, estimate: float) -> bool:
        if self.limit is None:
            return True
        if self.stopped or self.spent + self.reserved + estimate > self.limit:
            self.stopped = True
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, actual: float) -> None:
        if self.limit is not None:
            self.reserved -= estimate
        self.spent += actual


@dataclass
class RunStats:
    calls: int = 0  # tier calls made in this run (retries not counted)
    judge_calls: int = 0
    errors: int = 0  # pairs left unknown in this run: failed calls or unscorable answers
    reused: int = 0  # pairs already scored in the journal
    spend_usd: float = 0.0  # this run, tiers and judge
    stopped_for_budget: bool = False
    pending: int = 0  # pairs (all) or prompts (cascade) not reached
    aborted: str = ""  # why the run stopped early: a tier whose every call fails for good


@dataclass
class CollectConfig:
    prompts: list[Prompt]
    ladder: Ladder
    scorer: Scorer
    out: Path
    mode: Mode = Mode.ALL
    max_cost: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def journal_path(self) -> Path:
        return journal_path(self.out)


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".journal.jsonl")


def check_ladder(ladder: Ladder) -> None:
    missing = [t.name for t in ladder.tiers if not t.litellm_model]
    if missing:
        raise CollectError(
            f"tier(s) {missing} have no litellm_model; the ladder must say how to call every "
            'tier, e.g. litellm_model = "openai/gpt-4o-mini" (see docs/collect.md)'
        )
    columns = [t.model for t in ladder.tiers]
    if len(set(columns)) != len(columns):
        raise CollectError(f"tier models {columns} must differ: each is a column of the table")


class Collector:
    def __init__(self, cfg: CollectConfig, progress: Progress | None = None, sleep: Any = None):
        check_ladder(cfg.ladder)
        self.cfg = cfg
        self.progress = progress or NoProgress()
        self.callers = [TierCaller(t, cfg.retry, sleep) for t in cfg.ladder.tiers]
        self.judge_caller = getattr(cfg.scorer.judge, "caller", None)
        self.journal = Journal(cfg.journal_path, cfg.scorer.signature)
        spent_before = sum(r.spend for r in self.journal.records.values())
        self.budget = Budget(cfg.max_cost, spent_before)
        self.stats = RunStats()
        self._max_cost: dict[str, float] = {}
        self._answered: dict[str, int] = {}
        self._fatal: dict[str, int] = {}

    @property
    def stopped(self) -> bool:
        return self.budget.stopped or bool(self.stats.aborted)

    def _watch(self, tier: Tier, rec: Record, fatal: bool) -> None:
        """Fail fast: a tier whose first FAIL_FAST calls all fail for good (a wrong key, model
        or api_base) stops the run with the reason, instead of journaling thousands of errors."""
        if rec.answered:
            self._answered[tier.name] = self._answered.get(tier.name, 0) + 1
        elif fatal:
            self._fatal[tier.name] = n = self._fatal.get(tier.name, 0) + 1
            if n >= FAIL_FAST and not self._answered.get(tier.name) and not self.stats.aborted:
                self.stats.aborted = (
                    f"tier {tier.name!r}: its first {n} calls all failed ({rec.error}); check "
                    "litellm_model, api_base and the key named by api_key_env, then rerun"
                )

    # ------------------------------------------------------------ one pair

    def _estimate(self, i: int, prompt: Prompt, call_tier: bool) -> float:
        tier = self.cfg.ladder.tiers[i]
        msgs = [dict(m) for m in prompt.messages]
        est = self.callers[i].estimate_cost(msgs, self._max_cost.get(tier.name)) if call_tier else 0
        if self.judge_caller is not None:
            seen = self._max_cost.get("judge")
            est += self.judge_caller.estimate_cost(msgs * 2, seen)
        return est

    def _seen_cost(self, key: str, cost: float) -> None:
        if cost > self._max_cost.get(key, 0.0):
            self._max_cost[key] = cost

    async def pair(self, prompt: Prompt, i: int) -> Record | None:
        """The scored record of (prompt, tier i), from the journal or a new call; None when
        the budget stops it."""
        tier = self.cfg.ladder.tiers[i]
        old = self.journal.find(prompt.id, tier.name, tier.litellm_model, prompt.digest)
        if old is not None and old.scored:
            self.stats.reused += 1
            return old
        rescore = old is not None and old.answered
        estimate = self._estimate(i, prompt, call_tier=not rescore)
        if not self.budget.reserve(estimate):
            self.stats.stopped_for_budget = True
            return None
        if self.stats.aborted:
            self.budget.settle(estimate, 0.0)
            return None
        rec, fatal = await (
            self._rescore(old, prompt) if rescore and old else self._call(prompt, i)
        )
        self._watch(tier, rec, fatal)
        self._seen_cost(tier.name, rec.cost_usd or 0.0)
        self._seen_cost("judge", rec.judge_cost)
        spend = rec.judge_cost if rescore else rec.spend
        self.budget.settle(estimate, spend)
        self.stats.spend_usd += spend
        self.stats.errors += 0 if rec.scored else 1
        self.journal.append(rec)
        return rec

    async def _call(self, prompt: Prompt, i: int) -> tuple[Record, bool]:
        tier: Tier = self.cfg.ladder.tiers[i]
        res = await self.callers[i].call([dict(m) for m in prompt.messages])
        self.stats.calls += 1
        score = await self._score(prompt, res.answer) if res.ok else Score(None, res.error)
        rec = Record(
            id=prompt.id,
            tier=tier.name,
            model=tier.litellm_model,
            digest=prompt.digest,
            answer=res.answer,
            score=score.value,
            error=score.error,
            input_tokens=res.input_tokens,
            output_tokens=res.output_tokens,
            cost_usd=res.cost_usd,
            latency_ms=res.latency_ms,
            attempts=res.attempts,
            judge=score.judge,
        )
        return rec, res.fatal

    async def _rescore(self, old: Record, prompt: Prompt) -> tuple[Record, bool]:
        score = await self._score(prompt, old.answer or "")
        rec = Record(**{**old.__dict__, "score": score.value, "error": score.error, "at": 0.0})
        if score.judge:
            rec.judge = score.judge
        return rec, False

    async def _score(self, prompt: Prompt, answer: str | None) -> Score:
        score = await self.cfg.scorer(prompt, answer or "")
        if self.cfg.scorer.kind is ScorerKind.JUDGE:
            self.stats.judge_calls += 1
        return score

    def _tick(self) -> None:
        self.progress.advance(self.stats.calls, self.stats.errors, self.budget.spent)

    # ------------------------------------------------------------ the two modes

    async def _all(self) -> None:
        tiers = range(len(self.cfg.ladder))
        todo = {i: iter([p for p in self.cfg.prompts]) for i in tiers}
        self.progress.start(len(self.cfg.prompts) * len(self.cfg.ladder), "pairs")

        async def worker(i: int, items: Iterator[Prompt]) -> None:
            for prompt in items:  # workers share the iterator: each prompt is taken once
                if self.stopped:
                    self.stats.pending += 1
                    continue
                if await self.pair(prompt, i) is None:
                    self.stats.pending += 1
                    continue
                self._tick()

        workers = [
            worker(i, todo[i]) for i in tiers for _ in range(self.cfg.ladder.tiers[i].concurrency)
        ]
        await asyncio.gather(*workers)

    async def _cascade(self) -> None:
        items = iter(self.cfg.prompts)
        self.progress.start(len(self.cfg.prompts), "prompts")
        mark = self.cfg.ladder.pass_mark

        async def one(prompt: Prompt) -> bool:
            for i in range(len(self.cfg.ladder)):
                rec = await self.pair(prompt, i)
                if rec is None:
                    return False
                if rec.score is not None and rec.score >= mark:
                    break
            return True

        async def worker() -> None:
            for prompt in items:
                if self.stopped or not await one(prompt):
                    self.stats.pending += 1
                    continue
                self._tick()

        width = sum(t.concurrency for t in self.cfg.ladder.tiers)
        await asyncio.gather(*(worker() for _ in range(width)))

    async def run(self) -> RunStats:
        self.journal.open()
        try:
            await asyncio.gather(*(c.warm_up() for c in self.callers))
            await (self._all() if self.cfg.mode is Mode.ALL else self._cascade())
        finally:
            self.journal.close()
            self.progress.close()
        return self.stats
