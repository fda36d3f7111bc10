"""Hand-sized labelled requests for fast tests (written for the tests, 12 per tier)."""

from __future__ import annotations

import json
from pathlib import Path

SMALL = [
    "hi there!",
    "thanks, that's all for today",
    "What time does the Berlin office open?",
    "Translate 'good morning' into French.",
    "Is this review positive or negative: 'Loved it, arrived early.'",
    "Convert to uppercase: shipping delayed",
    "What does API stand for?",
    "Fill in: Dear {name}, your order {id} shipped. name=Ana id=4471",
    "Give me a synonym for quick.",
    "Sort these words: pear, apple, fig",
    "How do I reset my password?",
    "Tell me a short joke about cats.",
]
MEDIUM = [
    "Write a SQL query that returns each customer's total spend per month, joined with orders.",
    "Summarise this incident report and list every action item with its owner: the cache "
    "cluster failed over twice on Tuesday, Priya will audit the alerts, Tom rotates keys.",
    "A train leaves at 9:40 and travels 210 km at 84 km/h, then waits 12 minutes. When does "
    "it arrive?",
    "Explain this Python error and fix it: TypeError: unsupported operand type(s) for +: "
    "'int' and 'str' in line 14 of report.py",
    "Write a regex that matches ISO 8601 dates with optional time and timezone offset.",
    "Plan a three-day product launch checklist for a small SaaS team.",
    "Write a sonnet about a lighthouse keeper who is afraid of the dark.",
    "Compare these two paragraphs and tell me which one is more persuasive and why.",
    "Draft a polite reply to a customer whose refund took three weeks.",
    "Translate this marketing tagline into German keeping the pun: 'Brew-tifully simple'.",
    "Write a Python class for an LRU cache with get and put in O(1).",
    "Give me a two-week study plan for the AWS Solutions Architect exam.",
]
LARGE = [
    "I take warfarin after my stent; is it safe to add ibuprofen for a sprained knee?",
    "Review this indemnification clause for hidden liability and propose safer wording for "
    "the supplier in a cross-border SaaS contract governed by English law.",
    "Prove that there are infinitely many primes congruent to 3 mod 4.",
    "Design a sharded Postgres schema for 10 billion events with cross-shard transactions "
    "and explain the trade-offs.",
    "Reconcile these three analyst reports that disagree on Q3 revenue and tell me which "
    "assumptions drive the gap.",
    "Should I sell my index funds to pay down a 6.5% mortgage given my 32% marginal tax "
    "rate and a 10-year horizon? Show the numbers.",
    "Find the race condition in this Go worker pool that only appears under heavy load.",
    "My chest pain spreads to my left arm and I feel dizzy. What should I do right now?",
    "Evaluate the GDPR exposure of sending EU customer logs to a US analytics vendor under "
    "standard contractual clauses.",
    "Write a 3,000-word mystery chapter in the voice of an unreliable narrator that keeps "
    "every clue from chapters one to four consistent.",
    "How many ways can 8 rooks be placed on a chessboard with no two attacking and none on "
    "the main diagonal?",
    "Fix the thing from before, you know the one, it broke again in prod.",
]


def rows() -> list[dict[str, str]]:
    out = []
    for tier, texts in (("small", SMALL), ("medium", MEDIUM), ("large", LARGE)):
        for i, text in enumerate(texts):
            out.append({"id": f"{tier}-{i:02d}", "family": "tiny", "tier": tier, "text": text})
    return out


def write_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
    return path
