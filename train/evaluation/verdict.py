"""The "should I switch?" verdict: plain sentences read off the metrics block alone."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pct(x: float) -> str:
    return f"{x:.1%}" if np.isfinite(x) else "n/a"


def verdict(mt: dict[str, Any]) -> dict[str, Any]:
    """Plain sentences answering "should I switch?", from the figures alone, plus the two
    booleans they rest on (router above random mixing / above the heuristic)."""
    d, h = mt["default"], mt["baselines"]["heuristic"]
    rq, hq = d["random_quality_at_same_cost"], h["router_quality_at_same_cost"]
    beats_random = bool(np.isfinite(rq) and d["quality"] > rq + 1e-9)
    beats_heur = bool(np.isfinite(hq) and hq > h["quality"] + 1e-9)
    t95 = next(t for t in mt["targets"] if t["share_of_top_quality"] == 0.95)
    c_top = mt["axis"]["top_cost"]
    lines = [
        f"At its default setting ({d.get('label', 'threshold')}) the router keeps "
        f"{_pct(d['quality_share_of_top'])} of the top tier's quality for "
        f"{_pct(d['cost_share_of_top'])} of its cost.",
        f"Random mixing of fixed tiers at the same cost reaches quality {rq:.4f} against the "
        f"router's {d['quality']:.4f} ({d['quality'] - rq:+.4f}).",
        f"The rule-based heuristic reaches {h['quality']:.4f} at {_pct(h['cost'] / c_top)} of "
        f"top cost; the router's curve at that cost reaches {hq:.4f}.",
        f"Over the whole cost range the router closes {_pct(mt['gap_closed'])} of the gap "
        f"between random mixing and the oracle (normalised AUC {mt['auc']['router']:.4f} vs "
        f"{mt['auc']['random']:.4f} random, {mt['auc']['oracle']:.4f} oracle).",
        f"To keep 95% of top quality the router needs {_pct(t95['cost']['router'] / c_top)} of "
        f"top cost, random mixing {_pct(t95['cost']['random'] / c_top)} (saving "
        f"{_pct(t95['saving_vs_random_share'])}).",
    ]
    if beats_random and beats_heur:
        bottom = (
            "Switch: at its default setting the router beats random mixing, and at the "
            "heuristic's cost it beats the heuristic."
        )
    elif beats_random:
        bottom = (
            "Mixed: the router beats random mixing at its default threshold but not the "
            "rule-based heuristic at the heuristic's cost."
        )
    else:
        bottom = (
            "Do not switch on this evidence: at its default setting the router is no "
            "better than randomly mixing fixed tiers at the same cost."
        )
    gap = mt["gap_closed"]
    if beats_random and np.isfinite(gap) and gap < 0:
        bottom += (
            " But over the whole cost range its threshold curve lies below random mixing"
            " (negative gap closed): keep the threshold near its default."
        )
    return {
        "summary": bottom,
        "details": lines,
        "beats_random_at_default": beats_random,
        "beats_heuristic_at_its_cost": beats_heur,
    }
