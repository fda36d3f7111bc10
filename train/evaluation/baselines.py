"""Baselines every router is scored against: fixed tiers, random mixing, a rule, the oracle.

The rule-based heuristic is the one teams use before they have a model (issue 4): a request of
over 100 words, or one holding a reasoning keyword, goes to the top tier; code, or over 40
words, to the middle tier; everything else to the bottom tier. On a two-tier ladder the middle
tier is the top tier (`middle_tier`), so "code or long" escalates there too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum

import numpy as np

from train.evaluation.metrics import Point, always_tier_points, oracle_decisions, upper_envelope

TOP_WORDS = 100  # more words than this: top tier
MIDDLE_WORDS = 40  # more words than this: middle tier

# "compare / analyze / explain why / evaluate / trade-off" and their inflections.
REASONING = re.compile(
    r"\b(compar(e|es|ed|ing|ison|isons)|analy[sz](e|es|ed|ing|is)|explain(s|ed|ing)? why"
    r"|evaluat(e|es|ed|ing|ion)|trade[- ]?offs?)\b",
    re.IGNORECASE,
)

# A request is "code" if it carries code or asks for it in a programming language.
CODE = re.compile(
    r"```|^\s*(def \w+\(|class \w+\s*[:({]|import \w|from \S+ import |#include|public |"
    r"private |function\s*\w*\s*\(|(const|let|var) \w+\s*=|SELECT\b.*\bFROM\b|INSERT INTO|"
    r"CREATE TABLE)|[{};]\s*$|=>|console\.log|\bc\+\+|\b(python|javascript|typescript|java|"
    r"golang|sql|regex|bash|code|coding|script|program|programming|compiler?|traceback)\b",
    re.IGNORECASE | re.MULTILINE,
)


class Baseline(str, Enum):
    RANDOM = "random"  # random mixing of fixed tiers: the envelope of the always-tier points
    HEURISTIC = "heuristic"  # the word-count / keyword rule above
    ORACLE = "oracle"  # the cheapest sufficient tier per row, in hindsight


def middle_tier(n_tiers: int) -> int:
    """The rule's "middle" tier: 1 of 0..2, 2 of 0..4; the top tier of a two-tier ladder."""
    if n_tiers < 2:
        raise ValueError("a ladder needs two or more tiers")
    return n_tiers // 2


def word_count(text: str) -> int:
    return len(text.split())


def is_reasoning(text: str) -> bool:
    return REASONING.search(text) is not None


def is_code(text: str) -> bool:
    return CODE.search(text) is not None


def heuristic_tier(text: str, n_tiers: int) -> int:
    """The field's rule for one request, as a tier index of an n-tier ladder."""
    words = word_count(text)
    if words > TOP_WORDS or is_reasoning(text):
        return n_tiers - 1
    if words > MIDDLE_WORDS or is_code(text):
        return middle_tier(n_tiers)
    return 0


def heuristic_decisions(texts: Sequence[str], n_tiers: int) -> np.ndarray:
    return np.array([heuristic_tier(t, n_tiers) for t in texts], dtype=np.int64)


def random_envelope(quality: np.ndarray, cost: np.ndarray) -> list[Point]:
    """What mixing fixed tiers at random can reach: the upper envelope of the always-tiers."""
    return upper_envelope(always_tier_points(quality, cost))


def anchored_envelope(
    points: Sequence[Point], quality: np.ndarray, cost: np.ndarray
) -> list[Point]:
    """A curve with the always-cheapest point added, so every curve starts at the same cost
    (the convention in metrics.py that keeps router / heuristic / oracle AUCs comparable)."""
    cheapest = always_tier_points(quality, cost)[0]
    return upper_envelope([*points, cheapest])


def oracle(quality: np.ndarray, pass_mark: float) -> np.ndarray:
    """Hindsight tier per row (see metrics.oracle_decisions)."""
    return oracle_decisions(quality, pass_mark)
