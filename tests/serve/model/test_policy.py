"""The decision rules on hand-made probabilities and costs: clamps, ties, the quality knob."""

from __future__ import annotations

import numpy as np
import pytest

from serve.model.ladder import default_ladder
from serve.model.policy import (
    CostModel,
    KnobPoint,
    Policy,
    PolicyError,
    Rule,
    decide_threshold,
    decide_threshold_one,
    decide_utility,
    decide_utility_one,
)

# Three tiers, costs in USD: small 1e-4, medium 3e-4, large 1e-2.
P = np.array(
    [
        [0.60, 0.75, 0.90],  # large worth it only when lambda is small
        [0.95, 0.96, 0.97],  # small nearly as good as anything
        [0.20, 0.80, 0.81],  # medium the sweet spot
    ]
)
C = np.tile([1e-4, 3e-4, 1e-2], (3, 1))


def test_utility_picks_the_best_trade_and_lambda_zero_picks_the_best_probability():
    assert decide_utility(P, C, 0.0).tolist() == [2, 2, 2]
    assert decide_utility(P, C, 100.0).tolist() == [1, 0, 1]
    assert decide_utility(P, C, 1e6).tolist() == [0, 0, 0]


def test_clamps_bound_the_choice_per_row():
    assert decide_utility(P, C, 0.0, 0, 1).tolist() == [1, 1, 1]
    assert decide_utility(P, C, 1e6, 1, 2).tolist() == [1, 1, 1]
    lo, hi = np.array([0, 2, 0]), np.array([0, 2, 2])
    assert decide_utility(P, C, 100.0, lo, hi).tolist() == [0, 2, 1]
    for i in range(3):
        assert decide_utility_one(P[i], C[i], 100.0, int(lo[i]), int(hi[i])) == [0, 2, 1][i]


def test_ties_go_to_the_cheaper_estimate_then_the_lower_tier():
    p = np.array([[0.5, 0.5, 0.5], [0.5, 0.6, 0.5]])
    c = np.array([[3e-4, 1e-4, 1e-4], [1e-4, 2e-4, 3e-4]])
    # Row 0: equal probabilities: the cheaper of tiers 1 and 2, then the lower index.
    # Row 1 at lambda = 1000: utilities 0.4, 0.4, 0.2: tied, the cheaper (tier 0).
    assert decide_utility(p, c, 0.0).tolist() == [1, 1]
    assert decide_utility(p, c, 1000.0).tolist() == [1, 0]
    assert decide_utility_one(p[0], c[0], 0.0, 0, 2) == 1
    assert decide_utility_one(p[1], c[1], 1000.0, 0, 2) == 0


def test_scalar_and_vector_paths_agree_on_random_rows():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(400, 4))
    c = rng.uniform(1e-5, 1e-2, size=(400, 4))
    for lam in (0.0, 3.0, 30.0, 300.0, 3e4):
        lo = rng.integers(0, 2, size=400)
        hi = rng.integers(2, 4, size=400)
        vec = decide_utility(p, c, lam, lo, hi)
        one = [decide_utility_one(p[i], c[i], lam, int(lo[i]), int(hi[i])) for i in range(400)]
        assert vec.tolist() == one
        assert np.all((vec >= lo) & (vec <= hi))


def test_more_quality_never_costs_less_row_by_row():
    """Lowering lambda (asking for more quality) never moves a row to a cheaper tier."""
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(500, 3))
    c = rng.uniform(1e-5, 1e-2, size=(500, 3))
    chosen_cost = [
        c[np.arange(500), decide_utility(p, c, lam)] for lam in np.geomspace(1e5, 1e-2, 60)
    ]
    assert np.all(np.diff(np.array(chosen_cost), axis=0) >= 0)


def test_threshold_rule_is_the_cheapest_tier_reaching_it():
    ps = np.array([[0.3, 0.8, 1.0], [0.9, 0.95, 1.0]])
    assert decide_threshold(ps, 0.5).tolist() == [1, 0]
    assert decide_threshold(ps, 0.99).tolist() == [2, 2]
    assert decide_threshold(ps, 0.0, 1, 2).tolist() == [1, 1]
    assert decide_threshold_one(ps[0], 0.5, 0, 0) == 0


def _policy(rule: Rule, values: list[float]) -> Policy:
    table = tuple(
        KnobPoint(q, v, q, q / 2) for q, v in zip([0.8, 0.9, 0.95, 1.0], values, strict=True)
    )
    return Policy(rule, 0.95, values[2], table)


def test_quality_knob_maps_through_the_table_monotonically():
    utility = _policy(Rule.UTILITY, [500.0, 100.0, 40.0, 0.0])
    assert utility.setting_for(0.95) == 40.0
    assert utility.setting_for(0.5) == 500.0  # below the table: its cheapest row
    assert utility.setting_for(0.91) == 40.0  # the cheapest row that kept at least 0.91
    assert utility.setting_for(1.0) == 0.0
    grid = np.linspace(0.01, 1.0, 100)
    lambdas = [utility.setting_for(q) for q in grid]
    assert all(b <= a for a, b in zip(lambdas, lambdas[1:], strict=False))
    thresholds = _policy(Rule.THRESHOLD, [0.2, 0.5, 0.7, 1.0])
    taus = [thresholds.setting_for(q) for q in grid]
    assert all(b >= a for a, b in zip(taus, taus[1:], strict=False))
    back = Policy.from_dict(utility.to_dict())
    assert back == utility


@pytest.mark.parametrize("quality", [0.0, -0.1, 1.01, float("nan")])
def test_quality_outside_zero_one_is_refused(quality):
    with pytest.raises(PolicyError, match="quality"):
        _policy(Rule.UTILITY, [500.0, 100.0, 40.0, 0.0]).setting_for(quality)


def test_a_table_that_is_not_monotone_is_refused():
    with pytest.raises(PolicyError, match="lambda must not increase"):
        _policy(Rule.UTILITY, [100.0, 500.0, 40.0, 0.0])
    with pytest.raises(PolicyError, match="threshold must not decrease"):
        _policy(Rule.THRESHOLD, [0.5, 0.2, 0.7, 1.0])
    with pytest.raises(PolicyError, match="malformed"):
        Policy.from_dict({"rule": "utility", "table": [[1, 2]]})


def test_cost_model_prices_tokens_and_extends_past_the_cap():
    cm = CostModel.from_ladder(
        default_ladder(), 512, {"learned": [False, True, False], "chars_per_token": 4.0}
    )
    costs = cm.costs(np.array([100.0]), np.array([[7.0, 50.0, 9.0]]))
    # small: fallback 300 answer tokens; medium: the predicted 50; large: fallback 300.
    np.testing.assert_allclose(
        costs[0],
        [(100 * 0.2 + 300 * 0.2) / 1e6, (100 * 0.6 + 50 * 0.6) / 1e6, (100 * 10 + 300 * 30) / 1e6],
    )
    np.testing.assert_allclose(cm.costs_one(100.0, [7.0, 50.0, 9.0]), costs[0])
    assert cm.input_tokens(100, 10_000) == 100  # under the cap: counted exactly
    assert cm.input_tokens(512, 10_000) == 2500  # at the cap: characters / chars_per_token
