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
from serve.model.runtime import decide
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
    threshold: float
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
    threshold = served.threshold if req.threshold is None else req.threshold
    return Query(text, threshold, lo, hi)


def decide_one(p: list[float], threshold: float, lo: int, hi: int) -> int:
    """Cheapest tier with p >= threshold (the top always qualifies), clamped to [lo, hi]."""
    tier = len(p) - 1
    for i, value in enumerate(p):
        if value >= threshold:
            tier = i
            break
    return lo if tier < lo else hi if tier > hi else tier


def decide_text(served: Served, q: Query, explorer: Explorer) -> tuple[list[float], int, bool]:
    """p_sufficient, the tier to use, and whether exploration moved it."""
    p = served.router.p_sufficient_one(q.text)
    tier, explored = explorer.step(decide_one(p, q.threshold, q.min_tier, q.max_tier), q.min_tier)
    return p, tier, explored


def answer(
    served: Served, p: list[float], tier: int, threshold: float, explored: bool
) -> dict[str, Any]:
    return {
        "tier": served.names[tier],
        "tier_index": tier,
        "p_sufficient": dict(zip(served.names, p, strict=True)),
        "threshold": threshold,
        "model": served.ref,
        "explore": explored,
    }


def answer_json(
    served: Served, p: list[float], tier: int, threshold: float, explored: bool
) -> bytes:
    """`json.dumps(answer(...))` without the encoder: names are pre-encoded at load time and
    floats use repr, exactly as the json module writes them (never NaN: checked at load)."""
    names = served.names_json
    probs = ",".join([f"{n}:{x!r}" for n, x in zip(names, p, strict=True)])
    return (
        f'{{"tier":{names[tier]},"tier_index":{tier},"p_sufficient":{{{probs}}},'
        f'"threshold":{float(threshold)!r},"model":{served.ref_json},'
        f'"explore":{"true" if explored else "false"}}}'
    ).encode()


def classify_one_json(served: Served, q: Query, explorer: Explorer) -> tuple[bytes, int, bool]:
    """The /classify hot path: response bytes, the tier, and whether it was explored."""
    p, tier, explored = decide_text(served, q, explorer)
    return answer_json(served, p, tier, q.threshold, explored), tier, explored


def classify_many(
    served: Served,
    queries: list[Query],
    explorer: Explorer,
) -> list[dict[str, Any]]:
    """One vectorised pass over the batch, then per-item thresholds, clamps and exploration."""
    p = served.router.p_sufficient([q.text for q in queries])
    thresholds = np.array([[q.threshold] for q in queries])
    lo = np.array([q.min_tier for q in queries])
    hi = np.array([q.max_tier for q in queries])
    tiers = decide(p, thresholds, lo, hi)  # type: ignore[arg-type]  # numpy broadcasts
    out = []
    for q, row, tier in zip(queries, p.tolist(), tiers.tolist(), strict=True):
        tier, explored = explorer.step(tier, q.min_tier)
        out.append(answer(served, row, tier, q.threshold, explored))
    return out
