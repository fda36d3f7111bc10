"""Hand-computed checks for train.evaluation.metrics (expected values derived in comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from train.evaluation.metrics import (
    Point,
    accuracy,
    always_tier_points,
    apgr,
    confusion_matrix,
    cost_at_quality,
    cpt,
    decide,
    expected_calibration_error,
    gap_closed,
    macro_f1,
    normalised_auc,
    operating_point,
    oracle_decisions,
    pgr,
    quality_at_cost,
    reliability_curve,
    threshold_sweep,
    under_over_routing,
    upper_envelope,
)

NAN = float("nan")

# 3 rows x 2 tiers; row 1 has unknown quality on tier 0.
Q = np.array([[0.2, 0.9], [NAN, 0.8], [1.0, 1.0]])
C = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])


# --------------------------------------------------------------------------- operating points


def test_operating_point_sums_cost_and_ignores_nan_quality() -> None:
    # [0,1,0]: cost 1 + 20 + 3 = 24; quality mean(0.2, 0.8, 1.0) = 2/3.
    assert operating_point(np.array([0, 1, 0]), Q, C) == Point(24.0, pytest.approx(2 / 3))
    # [1,0,0]: cost 10 + 2 + 3 = 15; quality mean(0.9, 1.0) = 0.95 (row 1 is NaN, skipped).
    p = operating_point([1, 0, 0], Q, C)
    assert p.cost == 15.0
    assert p.quality == pytest.approx(0.95)


def test_operating_point_all_unknown_quality_is_nan() -> None:
    p = operating_point([0], [[NAN, 1.0]], [[1.0, 2.0]])
    assert p.cost == 1.0
    assert math.isnan(p.quality)


def test_always_tier_points() -> None:
    # tier 0: cost 6, quality mean(0.2, 1.0) = 0.6; tier 1: cost 60, quality 2.7 / 3 = 0.9.
    pts = always_tier_points(Q, C)
    assert [p.cost for p in pts] == [6.0, 60.0]
    assert [p.quality for p in pts] == pytest.approx([0.6, 0.9])


def test_oracle_decisions() -> None:
    q = np.array(
        [
            [0.6, 0.9, 1.0],  # tier 0 passes -> 0
            [0.1, 0.4, 0.3],  # none passes, best is tier 1 -> 1
            [NAN, 0.7, 0.9],  # NaN never passes, tier 1 does -> 1
            [0.2, 0.2, 0.1],  # none passes, tie 0.2 -> cheapest, 0
            [NAN, NAN, NAN],  # nothing known -> 0
            [0.5, 0.5, 0.5],  # exactly at the pass mark passes -> 0
        ]
    )
    assert oracle_decisions(q).tolist() == [0, 1, 1, 0, 0, 0]
    assert oracle_decisions(q, pass_mark=0.95).tolist() == [2, 1, 2, 0, 0, 0]


@pytest.mark.parametrize(
    ("decisions", "quality", "cost", "match"),
    [
        ([0, 0, 0], Q, C[:, :1], "does not match"),  # cost shape mismatch
        ([0, 0], Q, C, "3 entries"),  # wrong number of decisions
        ([0, 2, 0], Q, C, r"\[0, 1\]"),  # tier index too large
        ([0, -1, 0], Q, C, r"\[0, 1\]"),  # negative tier index
        ([0.0, 1.0, 0.0], Q, C, "integer"),  # float decisions
        ([0], [0.5, 0.6], [1.0, 2.0], "2-D"),  # 1-D quality
    ],
)
def test_operating_point_validation(decisions, quality, cost, match) -> None:
    with pytest.raises(ValueError, match=match):
        operating_point(np.asarray(decisions), quality, cost)


# --------------------------------------------------------------------------- curves

A, CC, E = Point(1.0, 0.2), Point(3.0, 0.6), Point(5.0, 0.8)
ENV = [A, CC, E]


def test_upper_envelope_drops_dominated_nonconcave_and_collinear() -> None:
    points = [
        Point(6.0, 0.8),  # same quality as E but dearer: beyond the best point, dropped
        Point(2.0, 0.3),  # below chord A-C (0.4 at cost 2): non-concave, dropped
        E,
        Point(4.0, 0.5),  # dominated by C (cheaper and better), dropped
        CC,
        Point(2.0, 0.4),  # exactly on chord A-C: collinear, dropped
        A,
        Point(1.0, 0.1),  # same cost as A but worse, dropped
    ]
    # Slopes A->C = 0.2, C->E = 0.1: concave, so the frontier is A, C, E.
    assert upper_envelope(points) == ENV


def test_upper_envelope_single_and_empty() -> None:
    assert upper_envelope([Point(2.0, 0.5)]) == [Point(2.0, 0.5)]
    with pytest.raises(ValueError, match="empty"):
        upper_envelope([])
    with pytest.raises(ValueError, match="finite"):
        upper_envelope([Point(1.0, NAN)])


def test_quality_at_cost() -> None:
    assert math.isnan(quality_at_cost(ENV, 0.5))  # below the cheapest point
    assert quality_at_cost(ENV, 1.0) == pytest.approx(0.2)
    assert quality_at_cost(ENV, 2.0) == pytest.approx(0.4)  # halfway A-C
    assert quality_at_cost(ENV, 4.0) == pytest.approx(0.7)  # halfway C-E
    assert quality_at_cost(ENV, 10.0) == pytest.approx(0.8)  # flat after E


def test_cost_at_quality() -> None:
    assert cost_at_quality(ENV, 0.1) == 1.0  # cheapest point already suffices
    assert cost_at_quality(ENV, 0.4) == pytest.approx(2.0)
    assert cost_at_quality(ENV, 0.7) == pytest.approx(4.0)
    assert cost_at_quality(ENV, 0.8) == pytest.approx(5.0)
    assert cost_at_quality(ENV, 0.9) == math.inf  # unreachable


def test_envelope_must_be_sorted() -> None:
    with pytest.raises(ValueError, match="sorted"):
        quality_at_cost([E, A], 2.0)


def test_normalised_auc_known_piecewise_linear() -> None:
    # [1, 5]: trapezoids 2 * (0.2 + 0.6) / 2 = 0.8 and 2 * (0.6 + 0.8) / 2 = 1.4 -> 2.2 / 4.
    assert normalised_auc(ENV, 1.0, 5.0) == pytest.approx(0.55)
    # [1, 7]: plus flat 2 * 0.8 = 1.6 after E -> 3.8 / 6.
    assert normalised_auc(ENV, 1.0, 7.0) == pytest.approx(3.8 / 6)
    # [2, 4]: first point left of c_min, interpolated: 0.4, 0.6, 0.7 -> (0.5 + 0.65) / 2.
    assert normalised_auc(ENV, 2.0, 4.0) == pytest.approx(0.575)


def test_normalised_auc_left_of_first_point() -> None:
    # [0, 5]: nothing achievable on [0, 1) -> 2.2 / 5.
    assert normalised_auc(ENV, 0.0, 5.0) == pytest.approx(0.44)
    # With anchor 0.0: add the ramp 1 * (0.0 + 0.2) / 2 = 0.1 -> 2.3 / 5.
    assert normalised_auc(ENV, 0.0, 5.0, anchor_quality=0.0) == pytest.approx(0.46)
    # First point beyond c_max: no anchor -> 0; anchor 0.2 ramps to 0.5 at cost 10, so
    # 0.35 at c_max = 5 -> 5 * (0.2 + 0.35) / 2 / 5 = 0.275.
    far = [Point(10.0, 0.5)]
    assert normalised_auc(far, 0.0, 5.0) == 0.0
    assert normalised_auc(far, 0.0, 5.0, anchor_quality=0.2) == pytest.approx(0.275)
    with pytest.raises(ValueError, match="c_max > c_min"):
        normalised_auc(ENV, 5.0, 5.0)


def test_gap_closed() -> None:
    assert gap_closed(0.6, 0.5, 0.9) == pytest.approx(0.25)  # 0.1 of a 0.4 gap
    assert gap_closed(0.4, 0.5, 0.9) == pytest.approx(-0.25)
    assert math.isnan(gap_closed(0.5, 0.5, 0.5))


def test_router_random_oracle_end_to_end() -> None:
    # Row 0 is easy (tier 0 suffices), row 1 needs tier 1; tier costs 1 and 3.
    q = np.array([[1.0, 1.0], [0.0, 1.0]])
    c = np.array([[1.0, 3.0], [1.0, 3.0]])
    base = always_tier_points(q, c)  # (2, 0.5), (6, 1.0)
    c_min, c_max = base[0].cost, base[-1].cost
    random_auc = normalised_auc(upper_envelope(base), c_min, c_max)  # (0.5 + 1) / 2 = 0.75
    oracle = operating_point(oracle_decisions(q), q, c)  # decisions [0, 1] -> (4, 1.0)
    # Oracle frontier (2, 0.5) -> (4, 1.0), flat: (2 * 0.75 + 2 * 1.0) / 4 = 0.875.
    oracle_auc = normalised_auc(upper_envelope([*base, oracle]), c_min, c_max)
    # A router sending [1, 0] lands at (4, 0.5), dominated: its frontier equals random.
    bad = operating_point([1, 0], q, c)
    bad_auc = normalised_auc(upper_envelope([*base, bad]), c_min, c_max)
    assert (random_auc, oracle_auc, bad_auc) == pytest.approx((0.75, 0.875, 0.75))
    assert gap_closed(oracle_auc, random_auc, oracle_auc) == pytest.approx(1.0)
    assert gap_closed(bad_auc, random_auc, oracle_auc) == pytest.approx(0.0)


# --------------------------------------------------------------------------- RouteLLM metrics

# (share of strong calls, quality); weak = 0.5, strong = 0.9 -> PGR 0, 0.75, 1.
CURVE = [(0.0, 0.5), (0.5, 0.8), (1.0, 0.9)]


def test_pgr() -> None:
    assert pgr(0.7, 0.5, 0.9) == pytest.approx(0.5)
    assert np.asarray(pgr(np.array([0.5, 0.9, 1.0]), 0.5, 0.9)) == pytest.approx([0, 1, 1.25])
    with pytest.raises(ValueError, match="no gap"):
        pgr(0.7, 0.5, 0.5)


def test_apgr_known_area() -> None:
    # Trapezoids 0.5 * (0 + 0.75) / 2 + 0.5 * (0.75 + 1) / 2 = 0.1875 + 0.4375.
    assert apgr(CURVE) == pytest.approx(0.625)
    assert apgr(CURVE[::-1]) == pytest.approx(0.625)  # order of points does not matter
    assert apgr([(0.0, 0.5), (1.0, 0.9)]) == pytest.approx(0.5)  # random mixing line
    # Partial span, RouteLLM normalisation: PGR 0.25 -> 0.75 over [0.2, 0.6]:
    # area 0.4 * 1.0 / 2 = 0.2, divided by span 0.4 -> 0.5.
    assert apgr([(0.2, 0.6), (0.6, 0.8)], q_weak=0.5, q_strong=0.9) == pytest.approx(0.5)


def test_cpt_on_hand_curve() -> None:
    # PGR 0.5 on segment (0, 0) -> (0.5, 0.75): share 0.5 * 0.5 / 0.75 = 1/3.
    assert cpt(CURVE, 0.5) == pytest.approx(1 / 3)
    # PGR 0.8 on segment (0.5, 0.75) -> (1, 1): share 0.5 + 0.5 * 0.05 / 0.25 = 0.6.
    assert cpt(CURVE, 0.8) == pytest.approx(0.6)
    assert cpt(CURVE, 0.0) == 0.0


def test_cpt_non_monotone_takes_first_crossing_and_nan_when_unreachable() -> None:
    # PGR 0, 0.75, 0.5, 1: 80% first reached on (0.7, 0.5) -> (1, 1): 0.7 + 0.3 * 0.6 = 0.88.
    curve = [(0.0, 0.5), (0.4, 0.8), (0.7, 0.7), (1.0, 0.9)]
    assert cpt(curve, 0.8) == pytest.approx(0.88)
    assert cpt(curve, 0.5) == pytest.approx(0.4 * 0.5 / 0.75)
    # PGR tops out at 0.5 when the curve stops before the strong model.
    assert math.isnan(cpt([(0.0, 0.5), (0.5, 0.7)], 0.8, q_strong=0.9))


def test_routellm_curve_validation() -> None:
    with pytest.raises(ValueError, match="share 1.0"):
        apgr([(0.0, 0.5), (0.5, 0.8)])  # no strong endpoint and no q_strong
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cpt([(0.0, 0.5), (1.5, 0.9)], 0.5)
    with pytest.raises(ValueError, match="k >= 2"):
        apgr([(0.0, 0.5)])


# --------------------------------------------------------------------------- classification

LABELS = np.array([0, 0, 1, 1, 2, 2])
DECISIONS = np.array([0, 1, 1, 0, 2, 1])


def test_confusion_matrix() -> None:
    # Rows = label, columns = decision.
    expected = [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    assert confusion_matrix(LABELS, DECISIONS, 3).tolist() == expected
    assert confusion_matrix(LABELS, DECISIONS, 4).sum() == 6
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confusion_matrix(LABELS, DECISIONS, 2)


def test_accuracy_and_macro_f1() -> None:
    assert accuracy(LABELS, DECISIONS) == pytest.approx(0.5)  # rows 0, 2, 4 match
    # F1: tier 0: 2*1/(2+1+1) = 0.5; tier 1: 2*1/(2+2+1) = 0.4; tier 2: 2*1/(2+0+1) = 2/3.
    assert macro_f1(LABELS, DECISIONS) == pytest.approx((0.5 + 0.4 + 2 / 3) / 3)
    # Tier 1 absent from both is skipped: tier 0 F1 2/3, tier 2 F1 0 -> 1/3.
    assert macro_f1([0, 0], [0, 2]) == pytest.approx(1 / 3)


def test_under_over_routing() -> None:
    # Under: rows 3 (0 < 1) and 5 (1 < 2); over: row 1 (1 > 0).
    under, over = under_over_routing(LABELS, DECISIONS)
    assert (under, over) == pytest.approx((2 / 6, 1 / 6))


def test_classification_validation() -> None:
    with pytest.raises(ValueError, match="6 entries"):
        accuracy(LABELS, DECISIONS[:5])
    with pytest.raises(ValueError, match="lie in"):
        under_over_routing([0, -1], [0, 0])
    with pytest.raises(ValueError, match="non-empty"):
        macro_f1([], [])


# --------------------------------------------------------------------------- calibration


def test_reliability_curve_and_ece() -> None:
    prob = [0.1, 0.15, 0.8, 0.9, 0.95]
    outcome = [0.0, 1.0, 1.0, 1.0, NAN]  # last row unknown: ignored
    mid, mean_pred, frac_pos, count = reliability_curve(prob, outcome, n_bins=2)
    # Bin [0, .5): p 0.1, 0.15 -> mean 0.125, 1 of 2 positive. Bin [.5, 1]: 0.85, 2 of 2.
    assert mid.tolist() == [0.25, 0.75]
    assert mean_pred == pytest.approx([0.125, 0.85])
    assert frac_pos == pytest.approx([0.5, 1.0])
    assert count.tolist() == [2, 2]
    # ECE = (2 * |0.5 - 0.125| + 2 * |1 - 0.85|) / 4 = (0.75 + 0.3) / 4.
    assert expected_calibration_error(prob, outcome, n_bins=2) == pytest.approx(0.2625)


def test_reliability_curve_empty_bins_and_edges() -> None:
    _, mean_pred, frac_pos, count = reliability_curve([0.25, 1.0], [1.0, 1.0], n_bins=4)
    assert count.tolist() == [0, 1, 0, 1]  # p = 1.0 lands in the last bin
    assert np.isnan(mean_pred[0]) and np.isnan(frac_pos[2])
    assert mean_pred[[1, 3]] == pytest.approx([0.25, 1.0])
    # 0.25 predicted, 1 of 4 positive: perfectly calibrated.
    assert expected_calibration_error([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error([0.5], [NAN]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_curve([1.2], [1.0])


# --------------------------------------------------------------------------- thresholds

P = np.array([[0.3, 0.7, 1.0], [0.5, 0.5, 1.0], [0.9, 0.95, 1.0]])


def test_decide() -> None:
    # 0.5: row 0 -> tier 1 (0.3 < 0.5 <= 0.7); row 1 -> 0 (p == threshold passes); row 2 -> 0.
    assert decide(P, 0.5).tolist() == [1, 0, 0]
    assert decide(P, 0.8).tolist() == [2, 2, 0]
    assert decide(P, 0.0).tolist() == [0, 0, 0]
    assert decide(P, 1.0).tolist() == [2, 2, 2]


def test_decide_validation() -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        decide([[0.6, 0.5, 1.0]], 0.5)
    with pytest.raises(ValueError, match="last column"):
        decide([[0.2, 0.9]], 0.5)
    with pytest.raises(ValueError, match="threshold"):
        decide(P, 1.5)


def test_threshold_sweep() -> None:
    q = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    c = np.tile([1.0, 2.0, 4.0], (3, 1))
    pts = threshold_sweep(P, q, c, [0.0, 0.5, 0.8, 1.0])
    # tau 0: [0,0,0] -> (3, 2/3); 0.5: [1,0,0] -> (4, 1); 0.8: [2,2,0] -> (9, 1); 1: (12, 1).
    assert [p.cost for p in pts] == [3.0, 4.0, 9.0, 12.0]
    assert [p.quality for p in pts] == pytest.approx([2 / 3, 1.0, 1.0, 1.0])
    assert upper_envelope(pts) == [pts[0], pts[1]]
    with pytest.raises(ValueError, match="does not match"):
        threshold_sweep(P, q[:, :2], c[:, :2], [0.5])


@pytest.mark.parametrize("seed", range(8))
def test_threshold_sweep_one_pass_matches_decide_per_threshold(seed: int) -> None:
    """The sorted-moves sweep (used when there are many thresholds) must give exactly what
    deciding at each threshold gives: ties at a threshold pass, unknown quality is skipped."""
    rng = np.random.default_rng(seed)
    n, tiers = int(rng.integers(1, 200)), int(rng.integers(2, 5))
    raw = np.round(rng.random((n, tiers - 1)), int(rng.integers(1, 3)))  # many ties
    p = np.concatenate([np.maximum.accumulate(raw, axis=1), np.ones((n, 1))], axis=1)
    q = rng.random((n, tiers))
    q[rng.random((n, tiers)) < 0.25] = NAN
    c = rng.random((n, tiers))
    taus = np.unique(np.concatenate([p[:, :-1].ravel(), np.linspace(0, 1, 21)]))
    fast = threshold_sweep(p, q, c, taus)
    for tau, got in zip(taus, fast, strict=True):
        want = operating_point(decide(p, float(tau)), q, c)
        assert got.cost == pytest.approx(want.cost, rel=1e-9, abs=1e-12)
        if math.isnan(want.quality):
            assert math.isnan(got.quality)
        else:
            assert got.quality == pytest.approx(want.quality, rel=1e-9)
