"""Evaluation figures on hand-made rows with hand-given p_sufficient (answers derived in
comments), and the rule-based heuristic on hand-written texts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from train.evaluation.baselines import (
    heuristic_decisions,
    heuristic_tier,
    is_code,
    is_reasoning,
    middle_tier,
)
from train.evaluation.scoring import EvalInputs, score, sweep_thresholds


def _inputs(p, quality, cost, labels, heuristic, threshold=0.5, groups=(), sources=()):
    q = np.asarray(quality, dtype=float)
    sufficient = np.where(np.isnan(q), np.nan, (q >= 0.5).astype(float))
    return EvalInputs(
        tier_names=["small", "medium", "large"] if q.shape[1] == 3 else ["small", "large"],
        p_sufficient=np.asarray(p, dtype=float),
        quality=q,
        cost=np.asarray(cost, dtype=float),
        sufficient=sufficient,
        labels=np.asarray(labels),
        heuristic=np.asarray(heuristic),
        threshold=threshold,
        pass_mark=0.5,
        groups=groups,
        sources=sources,
    )


# Two tiers, four rows: rows 0, 1 need only the small tier, rows 2, 3 need the large one.
# The router ranks them perfectly. Costs 1 (small) and 10 (large) per row.
TWO = _inputs(
    p=[[0.9, 1], [0.8, 1], [0.3, 1], [0.2, 1]],
    quality=[[1, 1], [1, 1], [0, 1], [0, 1]],
    cost=[[1, 10]] * 4,
    labels=[0, 0, 1, 1],
    heuristic=[1, 1, 1, 1],  # the rule sends everything to the large tier here
)


@pytest.fixture(scope="module")
def two():
    return score(TWO)


def test_always_tiers_and_axis(two):
    # always small: cost 4, quality 0.5; always large: cost 40, quality 1.
    assert two["always"] == [
        {"tier": "small", "cost": 4.0, "quality": 0.5},
        {"tier": "large", "cost": 40.0, "quality": 1.0},
    ]
    assert two["axis"] == {"c_min": 4.0, "c_max": 40.0, "top_quality": 1.0, "top_cost": 40.0}


def test_envelopes_of_router_random_and_oracle(two):
    # Router sweep: (4, .5), (13, .75), (22, 1), (31, 1), (40, 1); (13, .75) is collinear.
    assert two["envelopes"]["router"] == [[4.0, 0.5], [22.0, 1.0]]
    assert two["envelopes"]["random"] == [[4.0, 0.5], [40.0, 1.0]]
    assert two["envelopes"]["oracle"] == [[4.0, 0.5], [22.0, 1.0]]  # oracle point = (22, 1)
    assert two["envelopes"]["heuristic"] == [[4.0, 0.5], [40.0, 1.0]]


def test_auc_and_gap_closed(two):
    # Normalised x = (c - 4) / 36. Router: ramp .5 -> 1 over [0, .5] (area .375), then flat 1
    # over [.5, 1] (area .5): .875. Random: (.5 + 1) / 2 = .75. Oracle = router here.
    auc = two["auc"]
    assert auc["router"] == pytest.approx(0.875)
    assert auc["random"] == pytest.approx(0.75)
    assert auc["oracle"] == pytest.approx(0.875)
    assert auc["heuristic"] == pytest.approx(0.75)
    assert auc["always:small"] == pytest.approx(0.5)  # nothing beyond always-small: flat .5
    assert auc["always:large"] == pytest.approx(0.75)
    assert two["gap_closed"] == pytest.approx(1.0)


def test_cost_to_reach_targets_and_saving_vs_random(two):
    t = {x["share_of_top_quality"]: x for x in two["targets"]}
    # 90%: router 4 + (.4 / .5) * 18 = 18.4, random 4 + .8 * 36 = 32.8.
    assert t[0.9]["cost"]["router"] == pytest.approx(18.4)
    assert t[0.9]["cost"]["random"] == pytest.approx(32.8)
    assert t[0.9]["saving_vs_random_usd"] == pytest.approx(14.4)
    assert t[0.9]["saving_vs_random_share"] == pytest.approx(14.4 / 32.8)
    # 95%: router 20.2, random 36.4; 100%: router 22, random 40 (saving 45%).
    assert t[0.95]["cost"]["router"] == pytest.approx(20.2)
    assert t[0.95]["cost"]["random"] == pytest.approx(36.4)
    assert t[1.0]["cost"]["router"] == pytest.approx(22.0)
    assert t[1.0]["saving_vs_random_share"] == pytest.approx(0.45)
    assert t[1.0]["router_cost_share_of_top"] == pytest.approx(22 / 40)


def test_quality_at_each_always_tier_cost(two):
    at = {x["tier"]: x for x in two["at_tier_cost"]}
    assert at["small"]["router_quality"] == pytest.approx(0.5)
    assert at["large"]["router_quality"] == pytest.approx(1.0)
    assert at["large"]["random_quality"] == pytest.approx(1.0)


def test_apgr_and_cpt_follow_routellm(two):
    # Router curve (share to large, PGR): (0, 0), (.25, .5), (.5, 1), (.75, 1), (1, 1).
    # Trapezoids: .0625 + .1875 + .5 = .75. CPT(50%) = .25; CPT(80%) = .25 + .6 * .25 = .4.
    tt = two["two_tier"]
    assert tt["router"]["apgr"] == pytest.approx(0.75)
    assert tt["router"]["cpt_50"] == pytest.approx(0.25)
    assert tt["router"]["cpt_80"] == pytest.approx(0.4)
    assert tt["random"] == pytest.approx(
        {"apgr": 0.5, "apgr_cost": 0.5, "cpt_50": 0.5, "cpt_80": 0.8}
    )
    # Every row costs the same on each tier, so the cost axis is the share of strong calls.
    assert tt["router"]["apgr_cost"] == pytest.approx(0.75)
    assert tt["heuristic"]["apgr"] == pytest.approx(0.5)  # always-large lies on the diagonal
    assert tt["oracle"]["apgr"] == pytest.approx(0.75)


def test_default_threshold_classification_and_calibration(two):
    d = two["default"]
    assert (d["quality"], d["cost_usd"]) == (1.0, 22.0)
    assert d["traffic_share"] == {"small": 0.5, "large": 0.5}
    assert d["random_quality_at_same_cost"] == pytest.approx(0.5 + 0.5 * 18 / 36)
    c = two["classification"]
    assert c["confusion"] == [[2, 0], [0, 2]]
    assert (c["accuracy"], c["macro_f1"], c["under_routing"], c["over_routing"]) == (1, 1, 0, 0)
    # p for "small": .9 .8 .3 .2 against outcomes 1 1 0 0, one row per bin:
    # |1-.9| + |1-.8| + |0-.3| + |0-.2| = .8 over 4 rows.
    assert two["calibration"]["small"]["ece"] == pytest.approx(0.2)
    assert two["mean_ece"] == pytest.approx(0.2)
    assert two["verdict"]["beats_random_at_default"] is True


# Three tiers, six rows labelled 0 0 1 1 2 2; at threshold .5 the router picks 0 1 1 0 2 1.
THREE = _inputs(
    p=[[0.9, 0.95, 1], [0.4, 0.6, 1], [0.2, 0.7, 1], [0.6, 0.7, 1], [0.1, 0.3, 1], [0.1, 0.55, 1]],
    quality=[[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1]],
    cost=[[1, 2, 10]] * 6,
    labels=[0, 0, 1, 1, 2, 2],
    heuristic=[0, 0, 0, 2, 2, 2],
    groups=["a", "a", "a", "b", "b", "b"],
    sources=["f1"] * 6,
)


def test_three_tier_confusion_and_routing_rates():
    out = score(THREE)
    c = out["classification"]
    assert c["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert c["accuracy"] == pytest.approx(0.5)
    assert c["under_routing"] == pytest.approx(2 / 6)  # rows 3 and 5
    assert c["over_routing"] == pytest.approx(1 / 6)  # row 1
    # F1 per tier: 2/(2+1+1) = .5, 2/(2+2+1) = .4, 2/(2+0+1) = 2/3.
    assert c["macro_f1"] == pytest.approx((0.5 + 0.4 + 2 / 3) / 3)
    d = out["default"]
    assert d["quality"] == pytest.approx(4 / 6) and d["cost_usd"] == pytest.approx(18.0)
    assert out["two_tier"] is None


def test_three_tier_baselines_and_breakdowns():
    out = score(THREE)
    h, o = out["baselines"]["heuristic"], out["baselines"]["oracle"]
    # Heuristic 0 0 0 2 2 2: row 2 fails; cost 1+1+1+10+10+10 = 33, quality 5/6.
    assert (h["cost"], h["quality"]) == (33.0, pytest.approx(5 / 6))
    assert h["traffic_share"] == pytest.approx([0.5, 0, 0.5])
    # Oracle = labels: cost 1+1+2+2+10+10 = 26, quality 1.
    assert (o["cost"], o["quality"]) == (26.0, 1.0)
    groups = {g["name"]: g for g in out["breakdowns"]["group"]}
    assert groups["a"]["rows"] == 3 and groups["a"]["router_quality"] == 1.0
    assert groups["a"]["router_cost"] == 5.0 and groups["b"]["router_cost"] == 13.0
    assert groups["b"]["router_quality"] == pytest.approx(1 / 3)
    assert groups["b"]["accuracy"] == pytest.approx(1 / 3)
    assert groups["b"]["oracle_quality"] == 1.0 and groups["b"]["top_cost"] == 30.0
    assert [s["name"] for s in out["breakdowns"]["source"]] == ["f1"]
    # Every curve starts at always-small and the oracle dominates random mixing.
    assert all(env[0] == [6.0, 2 / 6] for env in out["envelopes"].values())
    assert out["auc"]["oracle"] > out["auc"]["random"]
    assert out["auc"]["router_clamps"] >= out["auc"]["router"] - 1e-12


def test_sweep_covers_both_ends_and_every_boundary():
    taus = sweep_thresholds(np.asarray(THREE.p_sufficient))
    assert taus[0] == 0.0 and taus[-1] == 1.0
    assert {0.9, 0.95, 0.55, 0.3} <= set(np.round(taus, 6))
    big = np.column_stack([np.random.default_rng(0).random(5000), np.ones(5000)])
    assert len(sweep_thresholds(big)) <= 1000 + 101


def test_unknown_outcomes_do_not_count_as_failures():
    q = np.array(TWO.quality)
    q[0, 0] = math.nan  # row 0 never tried the small tier
    out = score(_inputs(TWO.p_sufficient, q, TWO.cost, [0, 0, 1, 1], [1, 1, 1, 1]))
    assert out["always"][0]["quality"] == pytest.approx(1 / 3)  # rows 1..3: 1, 0, 0
    assert out["calibration"]["small"]["rows"] == 3


# ---------------------------------------------------------------- heuristic


@pytest.mark.parametrize(
    ("text", "tier"),
    [
        ("hi there", 0),
        ("What is the capital of France?", 0),
        ("Compare Rust and Go for a CLI tool.", 2),  # reasoning keyword
        ("Please analyse the quarterly numbers.", 2),
        ("Explain why the sky is blue.", 2),
        ("Evaluate this plan.", 2),
        ("What are the trade-offs of caching here?", 2),
        ("Write a Python function that reverses a list.", 1),  # code request
        ("def f(x):\n    return x * 2", 1),  # code
        ("```\nSELECT * FROM users;\n```", 1),
        (" ".join(["word"] * 41), 1),  # over 40 words
        (" ".join(["word"] * 40), 0),  # exactly 40 is not over
        (" ".join(["word"] * 101), 2),  # over 100 words
        (" ".join(["word"] * 100), 1),
    ],
)
def test_heuristic_rules_on_hand_written_texts(text, tier):
    assert heuristic_tier(text, 3) == tier


def test_heuristic_on_other_ladders():
    assert middle_tier(2) == 1 and middle_tier(3) == 1 and middle_tier(5) == 2
    assert heuristic_tier("Write a bash script", 2) == 1  # middle of two tiers = top
    assert heuristic_tier("hello", 2) == 0
    assert heuristic_decisions(["hi", "explain why"], 4).tolist() == [0, 3]
    assert is_reasoning("a COMPARISON of two") and not is_reasoning("a comparable size")
    assert is_code("int main() {") and not is_code("How tall is Everest?")


def test_a_served_rule_is_scored_by_its_own_decisions_not_the_threshold():
    """A RuleCurve (the utility rule as served) drives the router curve and the default point;
    the threshold rule on the same p_sufficient is kept beside it for comparison."""
    from dataclasses import replace

    from train.evaluation.scoring import RuleCurve

    calls = []

    def decide(value: float, lo: int, hi: int) -> np.ndarray:
        calls.append((value, lo, hi))
        # value 2: every row small; value 1: the perfect routing; value 0: every row large.
        d = {2.0: [0, 0, 0, 0], 1.0: [0, 0, 1, 1], 0.0: [1, 1, 1, 1]}[value]
        return np.clip(np.array(d), lo, hi)

    rule = RuleCurve("utility", [2.0, 1.0, 0.0], 1.0, "utility, quality 1", decide, [0.5, 1.0, 1.0])
    # Useless p_sufficient: the threshold rule cannot tell the rows apart.
    inp = replace(TWO, p_sufficient=np.array([[0.5, 1.0]] * 4), rule=rule)
    got = score(inp)
    assert (1.0, 0, 1) in calls
    d = got["default"]
    assert d["rule"] == "utility" and d["label"] == "utility, quality 1"
    assert d["quality"] == pytest.approx(1.0) and d["cost_usd"] == pytest.approx(22.0)
    assert [r["setting"] for r in got["router_sweep"]] == [2.0, 1.0, 0.0]
    assert got["gap_closed"] == pytest.approx(1.0)  # the oracle's curve
    assert got["gap_closed_threshold_rule"] == pytest.approx(0.0)  # random mixing's
