"""From a validated request to a routing decision: text extraction, clamps, exploration.

Pure logic shared by the HTTP routes and `rung bench`'s in-process measurement; HTTP status
codes are carried by `InputError` so the routes stay thin.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from serve.api.schemas import ClassifyRequest
from serve.api.state import Served
from serve.model.policy import PolicyError, Rule
from serve.model.runtime import Setting
from serve.model.text import text_from_messages

Loc = tuple[str | int, ...]


class InputError(Exception):
    """Input we refuse: status 422 (invalid) or 413 (too large), naming the field."""

    def __init__(self, status: int, loc: Loc, msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.status, self.loc, self.msg, self.kind = status, loc, msg, kind

    def detail(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.loc), "msg": self.msg, "type": self.kind}]


@dataclass(frozen=True)
class Query:
    text: str
    setting: Setting  # the bundle's default, or what the request's quality / threshold mean
    min_tier: int
    max_tier: int


class Explorer:
    """Moves a share of decisions one tier down, never below the request's floor."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self._random = random.Random(seed).random

    def step(self, tier: int, floor: int) -> tuple[int, bool]:
        if self.rate and tier > floor and self._random() < self.rate:
            return tier - 1, True
        return tier, False


def _tier(value: str | int | None, served: Served, loc: Loc, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str):
        index = served.index.get(value)
        if index is None:
            raise InputError(
                422, loc, f"unknown tier {value!r}; the ladder is {list(served.names)}"
            )
        return index
    if not 0 <= value < len(served.names):
        raise InputError(422, loc, f"tier index {value} outside 0..{len(served.names) - 1}")
    return value


def to_query(
    req: ClassifyRequest,
    served: Served,
    max_chars: int,
    include_history: bool,
    loc: Loc = ("body",),
) -> Query:
    """Check one request against the served ladder and limits; raise `InputError` if bad."""
    if req.text is not None:
        if req.messages is not None:
            raise InputError(422, loc, "give either text or messages, not both")
        text, field = req.text, "text"
    elif req.messages is not None:
        text, field = text_from_messages(req.messages, include_history), "messages"
    else:
        raise InputError(422, (*loc, "text"), "field required: give text or messages", "missing")
    if not text.strip():
        what = "text" if field == "text" else "messages need a user turn with text, and it"
        raise InputError(422, (*loc, field), f"{what} must not be empty or whitespace")
    if len(text) > max_chars:
        raise InputError(
            413,
            (*loc, field),
            f"text has {len(text)} characters; the limit is {max_chars}",
            "too_large",
        )
    lo = _tier(req.min_tier, served, (*loc, "min_tier"), 0)
    hi = _tier(req.max_tier, served, (*loc, "max_tier"), len(served.names) - 1)
    if lo > hi:
        raise InputError(422, (*loc, "max_tier"), "max_tier is below min_tier")
    if req.quality is None and req.threshold is None:
        return Query(text, served.router.default_setting, lo, hi)
    try:
        setting = served.router.setting(req.quality, req.threshold)
    except PolicyError as exc:
        raise InputError(
            422, (*loc, "quality" if req.quality is not None else "threshold"), str(exc)
        ) from None
    return Query(text, setting, lo, hi)


def decide_text(
    served: Served, q: Query, explorer: Explorer
) -> tuple[int, list[float], list[float] | None, list[float], bool]:
    """The tier to use, p_sufficient, p_correct, per-tier cost, and whether exploration moved
    the tier."""
    tier, p, p_correct, cost = served.router.decide_one(q.text, q.setting, q.min_tier, q.max_tier)
    tier, explored = explorer.step(tier, q.min_tier)
    return tier, p, p_correct, cost, explored


def _setting_fields(s: Setting) -> dict[str, Any]:
    utility = s.rule is Rule.UTILITY
    return {
        "rule": s.rule.value,
        "quality": s.quality,
        "threshold": None if utility else s.value,
        "lambda": s.value if utility else None,
    }


def answer(
    served: Served,
    tier: int,
    p: list[float],
    p_correct: list[float] | None,
    cost: list[float],
    setting: Setting,
    explored: bool,
) -> dict[str, Any]:
    names = served.names
    return {
        "tier": names[tier],
        "tier_index": tier,
        "p_sufficient": dict(zip(names, p, strict=True)),
        "p_correct": None if p_correct is None else dict(zip(names, p_correct, strict=True)),
        "cost_usd": cost[tier],
        **_setting_fields(setting),
        "model": served.ref,
        "explore": explored,
    }


def _num(x: float | None) -> str:
    return "null" if x is None else repr(float(x))


def answer_json(
    served: Served,
    tier: int,
    p: list[float],
    p_correct: list[float] | None,
    cost: list[float],
    setting: Setting,
    explored: bool,
) -> bytes:
    """`json.dumps(answer(...))` without the encoder: names are pre-encoded at load time and
    floats use repr, exactly as the json module writes them (never NaN: checked at load)."""
    names = served.names_json
    probs = ",".join([f"{n}:{x!r}" for n, x in zip(names, p, strict=True)])
    if p_correct is None:
        correct = "null"
    else:
        correct = (
            "{" + ",".join([f"{n}:{x!r}" for n, x in zip(names, p_correct, strict=True)]) + "}"
        )
    utility = setting.rule is Rule.UTILITY
    return (
        f'{{"tier":{names[tier]},"tier_index":{tier},"p_sufficient":{{{probs}}},'
        f'"p_correct":{correct},"cost_usd":{cost[tier]!r},"rule":"{setting.rule.value}",'
        f'"quality":{_num(setting.quality)},'
        f'"threshold":{"null" if utility else _num(setting.value)},'
        f'"lambda":{_num(setting.value) if utility else "null"},"model":{served.ref_json},'
        f'"explore":{"true" if explored else "false"}}}'
    ).encode()


def classify_one_json(served: Served, q: Query, explorer: Explorer) -> tuple[bytes, int, bool]:
    """The /classify hot path: response bytes, the tier, and whether it was explored."""
    tier, p, p_correct, cost, explored = decide_text(served, q, explorer)
    body = answer_json(served, tier, p, p_correct, cost, q.setting, explored)
    return body, tier, explored


def classify_many(
    served: Served,
    queries: list[Query],
    explorer: Explorer,
) -> list[dict[str, Any]]:
    """One vectorised pass over the batch, then per-item settings, clamps and exploration."""
    router = served.router
    est = router.estimates([q.text for q in queries])
    lo = np.array([q.min_tier for q in queries])
    hi = np.array([q.max_tier for q in queries])
    tiers = np.zeros(len(queries), dtype=np.int64)
    # Group by setting: one vectorised decision per distinct (rule, value) in the batch.
    groups: dict[Setting, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(q.setting, []).append(i)
    for setting, rows in groups.items():
        idx = np.array(rows)
        sub = type(est)(
            None if est.p_correct is None else est.p_correct[idx],
            est.p_sufficient[idx],
            est.cost[idx],
        )
        tiers[idx] = router.decide(sub, setting, lo[idx], hi[idx])
    p_correct = None if est.p_correct is None else est.p_correct.tolist()
    out = []
    for i, (q, row, tier) in enumerate(
        zip(queries, est.p_sufficient.tolist(), tiers.tolist(), strict=True)
    ):
        tier, explored = explorer.step(tier, q.min_tier)
        corr = None if p_correct is None else p_correct[i]
        out.append(answer(served, tier, row, corr, est.cost[i].tolist(), q.setting, explored))
    return out
