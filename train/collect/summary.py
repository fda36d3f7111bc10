"""The summary of a collection: per tier pass rate (95% Wilson interval), mean cost per
request, p50 / p95 latency; the graduation table (each tier against the one below: quality
difference with its 95% interval, cost and latency multiples); a monthly cost projection at a
number of requests a day; the judge's calls and cost, apart.

The graduation difference is paired: the same prompts, both tiers scored, so the interval
(mean ± 1.96 standard errors of the per-prompt differences) is much tighter than comparing two
pass rates. In cascade mode a tier above the bottom is asked only where the tiers below failed,
so its rates are conditional on that; the summary says so.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from serve.model.ladder import Ladder
from train.collect.journal import Record
from train.evaluation.projection import DAYS_PER_MONTH

Z95 = 1.959964


def wilson(passes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a pass rate: sound at 0, at 1 and for small n."""
    if n == 0:
        return math.nan, math.nan
    p = passes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(diffs: list[float], z: float = Z95) -> tuple[float, float, float]:
    """Mean of per-prompt differences and its normal 95% interval."""
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(diffs) / n
    if n == 1:
        return mean, math.nan, math.nan
    se = statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - z * se, mean + z * se


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def tier_stats(ladder: Ladder, records: list[list[Record | None]]) -> list[dict[str, Any]]:
    out = []
    mark = ladder.pass_mark
    for i, tier in enumerate(ladder.tiers):
        recs = [row[i] for row in records if row[i] is not None]
        scored = [r for r in recs if r is not None and r.scored]
        passes = sum(1 for r in scored if (r.score or 0.0) >= mark)
        costs = [r.cost_usd for r in recs if r is not None and r.cost_usd is not None]
        lat = [r.latency_ms for r in recs if r is not None and r.latency_ms is not None]
        answered = [r for r in recs if r is not None and r.answered]
        lo, hi = wilson(passes, len(scored))
        mean_cost = _mean([float(c) for c in costs])
        out.append(
            {
                "tier": tier.name,
                "model": tier.model,
                "litellm_model": tier.litellm_model,
                "prompts": len(recs),
                "scored": len(scored),
                "unknown": len(recs) - len(scored),
                "pass_rate": passes / len(scored) if scored else math.nan,
                "pass_rate_95ci": [lo, hi],
                "mean_score": _mean([float(r.score or 0.0) for r in scored]),
                "mean_cost_usd": mean_cost,
                "cost_usd_total": sum(float(c) for c in costs),
                "mean_input_tokens": _mean([float(r.input_tokens) for r in answered]),
                "mean_output_tokens": _mean([float(r.output_tokens) for r in answered]),
                "latency_ms_p50": percentile([float(x) for x in lat], 0.5),
                "latency_ms_p95": percentile([float(x) for x in lat], 0.95),
            }
        )
    return out


def graduation(
    ladder: Ladder, records: list[list[Record | None]], tiers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each tier against the one below: is the quality gained worth the cost multiple?"""
    mark = ladder.pass_mark
    out = []
    for k in range(1, len(ladder)):
        diffs = []
        for row in records:
            lo, up = row[k - 1], row[k]
            if lo is not None and up is not None and lo.scored and up.scored:
                diffs.append(float((up.score or 0) >= mark) - float((lo.score or 0) >= mark))
        mean, ci_lo, ci_hi = paired_difference(diffs)
        below, above = tiers[k - 1], tiers[k]
        out.append(
            {
                "tier": above["tier"],
                "versus": below["tier"],
                "paired_prompts": len(diffs),
                "pass_rate_difference": mean,
                "difference_95ci": [ci_lo, ci_hi],
                "cost_multiple": _ratio(above["mean_cost_usd"], below["mean_cost_usd"]),
                "latency_multiple": _ratio(above["latency_ms_p50"], below["latency_ms_p50"]),
            }
        )
    return out


def monthly_projection(ladder: Ladder, tiers: list[dict[str, Any]], per_day: int) -> list[dict]:
    """USD a month if every request went to the tier: measured mean tokens x the tier's
    prices, or the measured mean cost when the tier has no prices."""
    out = []
    for tier, st in zip(ladder.tiers, tiers, strict=True):
        per_request = (
            tier.token_cost(st["mean_input_tokens"], st["mean_output_tokens"])
            if tier.has_prices
            else st["mean_cost_usd"]
        )
        out.append(
            {
                "tier": tier.name,
                "cost_per_request_usd": per_request,
                "requests_per_day": per_day,
                "usd_per_month": per_request * per_day * DAYS_PER_MONTH,
            }
        )
    return out


def judge_stats(records: list[list[Record | None]]) -> dict[str, Any]:
    judged = [r for row in records for r in row if r is not None and r.judge]
    return {
        "calls": len(judged),
        "errors": sum(1 for r in judged if r.judge.get("error")),
        "cost_usd": sum(r.judge_cost for r in judged),
        "input_tokens": sum(int(r.judge.get("input_tokens") or 0) for r in judged),
        "output_tokens": sum(int(r.judge.get("output_tokens") or 0) for r in judged),
    }


def summarise(
    ladder: Ladder,
    records: list[list[Record | None]],
    mode: str,
    per_day: int,
) -> dict[str, Any]:
    tiers = tier_stats(ladder, records)
    doc: dict[str, Any] = {
        "schema": "rung-collect-summary/1",
        "mode": mode,
        "pass_mark": ladder.pass_mark,
        "prompts": sum(1 for row in records if any(r is not None for r in row)),
        "tiers": tiers,
        "graduation": graduation(ladder, records, tiers),
        "monthly": monthly_projection(ladder, tiers, per_day),
        "judge": judge_stats(records),
    }
    if mode == "cascade":
        doc["note"] = (
            "cascade: each tier above the bottom was asked only where the tiers below failed; "
            "its pass rate is conditional on that, and tiers above a pass are unknown"
        )
    return doc
