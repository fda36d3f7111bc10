"""Calibrating lambda and the quality knob's table on hand-made held-out predictions."""

from __future__ import annotations

import numpy as np
import pytest

from serve.model.policy import Rule, decide_utility
from train.fit.calibrate import calibrate, curve_area, knob_table, lambda_grid, sweep

# Four rows, two tiers costing 1 and 10 USD. Rows 0 and 1 are answered by the small tier,
# rows 2 and 3 only by the large one. The heads rank them: the large tier's gain in p_correct
# is 0.05 (row 0), 0.1 (row 1), 0.5 (row 2), 0.6 (row 3); per USD of extra cost that is
# lambda = gain / 9, the breakpoints where a row moves up.
P = np.array([[0.9, 0.95], [0.8, 0.9], [0.4, 0.9], [0.3, 0.9]])
COST = np.tile([1.0, 10.0], (4, 1))
QUALITY = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])


def test_the_lambda_grid_holds_every_breakpoint_and_both_ends():
    grid = lambda_grid(P, COST)
    assert np.all(np.diff(grid) < 0)  # descending: cheapest first
    for gain in (0.05, 0.1, 0.5, 0.6):
        assert np.any(np.isclose(grid, gain / 9))
    assert grid[-1] == 0.0 and np.all(decide_utility(P, COST, grid[0]) == 0)


def test_the_table_keeps_the_cheapest_setting_for_each_quality_share():
    s = sweep(Rule.UTILITY, P, COST, QUALITY, COST)
    table = knob_table(s)
    values = [p.value for p in table]
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))  # monotone
    for p in table:
        assert p.achieved >= p.quality - 1e-9
    # Half the quality (always small): the largest lambda; full quality: rows 2 and 3 go up
    # (lambda below 0.5 / 9) while rows 0 and 1 stay down (lambda above 0.1 / 9): cost 22 of 40.
    full = table[-1]
    assert full.quality == pytest.approx(1.0) and full.cost_share == pytest.approx(22 / 40)
    assert 0.1 / 9 < full.value < 0.5 / 9
    policy = calibrate(s, 0.95)
    assert policy.value == full.value and policy.default_quality == 0.95
    # The perfect ranking traces the oracle's curve: (4, 0.5) to (22, 1), flat to 40; mean
    # quality over costs 4..40 = (18 x 0.75 + 18 x 1) / 36.
    assert curve_area(s) == pytest.approx(0.875)


def test_the_threshold_rule_gets_a_table_too():
    p_suff = np.column_stack([P[:, 0], np.ones(4)])
    s = sweep(Rule.THRESHOLD, p_suff, COST, QUALITY, COST)
    table = knob_table(s)
    taus = [p.value for p in table]
    assert all(b >= a for a, b in zip(taus, taus[1:], strict=False))
    assert 0.4 < table[-1].value <= 0.8  # rows 2, 3 go up, rows 0, 1 stay down


@pytest.mark.parametrize("rule", [Rule.UTILITY, Rule.THRESHOLD])
def test_the_blocked_sweep_scores_every_setting_as_deciding_it_alone(rule, monkeypatch):
    """Random rows with ties, unknown outcomes and three tiers; blocks of 7 settings so the
    block edges are crossed."""
    from serve.model.policy import decide_threshold
    from train.evaluation.metrics import operating_point
    from train.fit import calibrate as cal

    rng = np.random.default_rng(3)
    n = 60
    p = np.round(rng.uniform(size=(n, 3)), 1)  # coarse values: many ties
    if rule is Rule.THRESHOLD:
        p = np.maximum.accumulate(p, axis=1)
        p[:, -1] = 1.0
    cost_est = np.round(rng.uniform(0.1, 1, size=(n, 3)).cumsum(axis=1), 1)
    quality = rng.integers(0, 2, size=(n, 3)).astype(float)
    quality[rng.uniform(size=(n, 3)) < 0.1] = np.nan
    cost_true = cost_est * rng.uniform(0.5, 2, size=(n, 1))
    monkeypatch.setattr(cal, "_BLOCK_CELLS", 7 * n * 3)
    s = sweep(rule, p, cost_est, quality, cost_true)
    assert len(s.values) > 7
    for v, q, c in zip(s.values, s.quality, s.cost, strict=True):
        if rule is Rule.UTILITY:
            d = decide_utility(p, cost_est, float(v))
        else:
            d = decide_threshold(p, float(v))
        want = operating_point(d, quality, cost_true)
        assert c == pytest.approx(want.cost, rel=1e-12)
        assert q == pytest.approx(want.quality, rel=1e-12)
