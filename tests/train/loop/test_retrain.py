"""Retraining from logs: the gate, promotion, --force, rollback and `rung models`."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from serve.model.bundle import read_manifest
from serve.model.ladder import default_ladder
from serve.model.registry import current_target, history, set_current
from serve.model.runtime import Router
from tests.support.loop_fixtures import tiny_base_bundle
from tests.support.tiny_data import rows as tiny_rows
from train.cli import main
from train.data.logset import load_logs
from train.evaluation.gate import Figures, GateCriterion, Verdict, figures, implied_outcomes, judge
from train.fit.pipeline import TrainConfig, train_bundle
from train.loop.retrain import RetrainConfig, RetrainError, gate_models, outcome_text, retrain

LADDER = default_ladder()
PREFIXES = ("", "Quick question: ", "Please help. ", "Hi team, ")
LENIENT = GateCriterion(min_rows=10)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return tiny_base_bundle(tmp_path_factory)


@pytest.fixture
def models(tiny_base, tmp_path) -> Path:
    """A models folder whose `current` points at a copy of the tiny base bundle."""
    root = tmp_path / "models"
    shutil.copytree(tiny_base, root / "base")
    set_current(root, "base")
    return root


def _cascade(label: int, start: int = 0) -> list[dict]:
    """Tiers tried from `start` up to the first success; `label` is the cheapest sufficient
    tier. Starting at small gives complete outcomes on every tier."""
    return [
        {
            "tier": LADDER.names[t],
            "outcome": "success" if t >= label else "failure",
            "cost_usd": [0.0001, 0.0004, 0.01][t],
        }
        for t in range(start, max(start, label) + 1)
    ]


def write_logs(path: Path, prefixes=PREFIXES[1:], seed: int = 0, starts=(0,)) -> Path:
    """Paraphrased tiny requests with their true cascades, in a shuffled time order; request
    i's cascade starts at tier `starts[i % len(starts)]`."""
    items = [(p + r["text"], LADDER.index(r["tier"])) for r in tiny_rows() for p in prefixes]
    random.Random(seed).shuffle(items)
    with open(path, "w") as fh:
        for i, (text, label) in enumerate(items):
            start = starts[i % len(starts)]
            fh.write(
                json.dumps(
                    {
                        "request_id": f"{path.stem}-{i}",
                        "ts": f"2026-11-22T10:{i // 60:02d}:{i % 60:02d}Z",
                        "text": text,
                        "routed_tier": LADDER.names[start],
                        "explore": False,
                        "attempts": _cascade(label, start),
                    }
                )
                + "\n"
            )
    return path


# ---------------------------------------------------------------- the gate, by hand


def _fig(cost: float, ece: float, rows: int = 100) -> Figures:
    return Figures(rows, rows, 0.9, 0.855, cost, 10.0, ece, 200, 0.5, 0.86, cost)


@pytest.mark.parametrize(
    ("cand", "base", "verdict"),
    [
        (_fig(4.0, 0.10), _fig(5.0, 0.02), Verdict.BETTER),  # cheaper wins whatever the ECE
        (_fig(6.0, 0.01), _fig(5.0, 0.10), Verdict.WORSE),  # dearer loses whatever the ECE
        (_fig(5.02, 0.05), _fig(5.0, 0.05), Verdict.TIE),  # within 1%: calibration decides
        (_fig(5.0, 0.08), _fig(5.0, 0.05), Verdict.WORSE),  # ... and it is worse
        (_fig(math.inf, 0.0), _fig(5.0, 0.1), Verdict.WORSE),  # never reaches the target
        (_fig(5.0, 0.1), _fig(math.inf, 0.0), Verdict.BETTER),
        (_fig(1.0, 0.0, rows=20), _fig(5.0, 0.1), Verdict.UNKNOWN),  # too few complete rows
    ],
)
def test_judge_is_lexicographic_cost_then_calibration(cand, base, verdict):
    decision = judge(cand, base, GateCriterion(min_rows=50))
    assert decision.verdict is verdict
    assert decision.accept == (verdict in (Verdict.BETTER, Verdict.TIE))
    assert decision.reason


def test_figures_on_a_hand_made_table():
    # Two tiers, costs 1 and 10. Rows 0-1 need only the cheap tier, rows 2-3 need the top.
    quality = np.array([[1, 1], [1, 1], [0, 1], [0, 1], [np.nan, 1]], dtype=float)
    cost = np.array([[1, 10]] * 5, dtype=float)
    good = np.array([[0.9, 1], [0.8, 1], [0.2, 1], [0.1, 1], [0.5, 1]])
    bad = good[[3, 2, 1, 0, 4]]  # the same scores, ranked backwards
    fg = figures(good, quality, cost, 0.5)
    fb = figures(bad, quality, cost, 0.5)
    # Complete rows 0-3; always-top quality 1, target 0.95. Good ranking: all cheap (4, 0.5),
    # rows 2-3 on top (22, 1.0); mixing the two reaches 0.95 at 4 + 18 * 0.9 = 20.2. Backward:
    # only all-on-top (40, 1.0) reaches 1.0, so 4 + 36 * 0.9 = 36.4.
    assert (fg.rows, fg.top_quality, fg.top_cost) == (4, 1.0, 40.0)
    assert fg.cost_at_target == pytest.approx(20.2)
    assert fb.cost_at_target == pytest.approx(36.4)
    # ECE over the 4 known cheap-tier pairs (row 4's is unknown), one pair per bin:
    # good |1-.9|, |1-.8|, |0-.2|, |0-.1| -> 0.15; backward .9, .8, .8, .9 -> 0.85.
    assert fg.ece_pairs == 4
    assert (fg.ece, fb.ece) == pytest.approx((0.15, 0.85))
    # At threshold 0.5 the good model sends rows 2-3 to the top: quality 1.0, cost 22.
    assert (fg.quality_at_threshold, fg.cost_at_threshold) == pytest.approx((1.0, 22.0))
    assert judge(fb, fg, GateCriterion(min_rows=4)).verdict is Verdict.WORSE


# ---------------------------------------------------------------- ladder-order inference

NAN = math.nan


def _request(rid: str, attempts: list[tuple[str, str]], explore: bool = False) -> dict:
    return {
        "request_id": rid,
        "ts": "2026-11-22T10:00:00Z",
        "text": f"request {rid}",
        "explore": explore,
        "attempts": [{"tier": t, "outcome": o} for t, o in attempts],
    }


# (attempts, explore, training labels from the logs, what the gate evaluates on)
CASCADES = {
    "escalated from small": (
        [("small", "failure"), ("medium", "success")],
        False,
        [0, 1, 1],
        [0, 1, 1],
    ),
    "failure at medium implies small fails": (
        [("medium", "failure"), ("large", "success")],
        False,
        [NAN, 0, 1],
        [0, 0, 1],
    ),
    "first attempt medium succeeded: small stays unknown": (
        [("medium", "success")],
        False,
        [NAN, 1, 1],
        [NAN, 1, 1],
    ),
    "routed to the top and succeeded: nothing below is known": (
        [("large", "success")],
        False,
        [NAN, NAN, 1],
        [NAN, NAN, 1],
    ),
    "the top failed: every cheaper tier fails": (
        [("large", "failure")],
        False,
        [NAN, NAN, 0],
        [0, 0, 0],
    ),
    "explore, decided medium, small succeeded": (
        [("small", "success")],
        True,
        [1, 1, 1],
        [1, 1, 1],
    ),
    "explore, decided large, medium failed": (
        [("medium", "failure"), ("large", "success")],
        True,
        [NAN, 0, 1],
        [0, 0, 1],
    ),
    "explore, decided large, medium succeeded": (
        [("medium", "success")],
        True,
        [NAN, 1, 1],
        [NAN, 1, 1],
    ),
    "a failure above a cheaper success never overwrites it": (
        [("small", "success"), ("medium", "failure"), ("large", "success")],
        False,
        [1, 0, 1],
        [1, 0, 1],
    ),
    "a retried tier (failed and succeeded) stays unknown and implies nothing": (
        [("medium", "failure"), ("medium", "success")],
        False,
        [NAN, NAN, NAN],
        [NAN, NAN, NAN],
    ),
}


def test_implied_outcomes_fill_only_tiers_below_a_failure(tmp_path):
    path = tmp_path / "cascades.jsonl"
    path.write_text(
        "".join(
            json.dumps(_request(f"r{i}", attempts, explore)) + "\n"
            for i, (attempts, explore, _, _) in enumerate(CASCADES.values())
        )
    )
    quality = load_logs([path], LADDER).dataset.quality
    before = quality.copy()
    implied = implied_outcomes(quality, LADDER.pass_mark)
    for i, (name, (_, _, labels, gate)) in enumerate(CASCADES.items()):
        # Training labels are untouched: tiers below a failure stay unknown there.
        np.testing.assert_array_equal(quality[i], labels, err_msg=name)
        np.testing.assert_array_equal(implied[i], gate, err_msg=name)
    np.testing.assert_array_equal(quality, before)  # the input is not modified


def test_implied_outcomes_use_the_pass_mark_on_graded_scores():
    quality = np.array([[NAN, 0.3, 0.8], [NAN, NAN, 0.6]])
    np.testing.assert_array_equal(implied_outcomes(quality, 0.5), [[0, 0.3, 0.8], [NAN, NAN, 0.6]])
    np.testing.assert_array_equal(implied_outcomes(quality, 0.7), [[0, 0.3, 0.8], [0, 0, 0.6]])
    with pytest.raises(ValueError, match="rows, tiers"):
        implied_outcomes(np.array([0.0, 1.0]))


def test_figures_count_complete_rows_before_and_after_the_inference():
    # Two tiers, costs 1 and 10: rows 0-1 observed complete, rows 2-3 started at the top and
    # failed there (cheap tier implied failed), row 4 started at the top and succeeded.
    quality = np.array([[1, 1], [0, 1], [NAN, 0], [NAN, 0], [NAN, 1]], dtype=float)
    cost = np.array([[1, 10]] * 5, dtype=float)
    p = np.array([[0.9, 1], [0.2, 1], [0.3, 1], [0.1, 1], [0.5, 1]])
    inferred = figures(p, quality, cost, 0.5)
    assert (inferred.observed_rows, inferred.rows) == (2, 4)
    assert inferred.ece_pairs == 4  # rows 0-3's cheap tier; row 4's stays unknown
    # On rows 0-3 the top tier solves 2: quality 0.5, costing 40.
    assert (inferred.top_quality, inferred.top_cost) == (0.5, 40.0)
    assert inferred.cheapest_sufficient == (1, 1, 2)  # cheap, top, solved by neither
    plain = figures(p, quality, cost, 0.5, criterion=GateCriterion(infer_cheaper_failures=False))
    assert (plain.observed_rows, plain.rows, plain.ece_pairs) == (2, 2, 2)
    reason = judge(inferred, inferred, GateCriterion(min_rows=5)).reason
    assert "only 4 held-out rows" in reason and "2 observed" in reason


# ---------------------------------------------------------------- refusals before training


def test_logs_without_usable_information_are_refused(models, tmp_path, capsys):
    path = tmp_path / "top.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "request_id": f"r{i}",
                    "ts": "2026-01-01T00:00:00Z",
                    "text": "hi",
                    "attempts": [{"tier": "large", "outcome": "success"}],
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    code = main(
        [
            "retrain",
            "--base",
            str(models / "current"),
            "--logs",
            str(path),
            "--out",
            str(models / "cand"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "none says whether a tier below the top" in err
    assert "Traceback" not in err and not (models / "cand").exists()


def test_logs_the_base_already_saw_and_missing_base_data_are_refused(models, tmp_path):
    base = read_manifest(models / "base")
    used = base.data["inputs"][0]["path"]
    with pytest.raises(RetrainError, match="already used to train the base"):
        retrain(RetrainConfig(models / "current", [used], models / "cand"))
    manifest = json.loads((models / "base" / "manifest.json").read_text())
    manifest["data"]["inputs"][0]["path"] = str(tmp_path / "gone.jsonl")
    manifest["data"]["inputs"][0]["abs_path"] = str(tmp_path / "gone.jsonl")
    (models / "base" / "manifest.json").write_text(json.dumps(manifest))
    logs = write_logs(tmp_path / "logs.jsonl")
    with pytest.raises(RetrainError, match="pass --data"):
        retrain(RetrainConfig(models / "current", [str(logs)], models / "cand"))
    (models / "cand").mkdir()
    with pytest.raises(RetrainError, match="already exists"):
        retrain(RetrainConfig(models / "current", [str(logs)], models / "cand"))


# ---------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory) -> Path:
    """A bundle trained on the tiny requests with their tiers shuffled: a worse model."""
    root = tmp_path_factory.mktemp("shuffled")
    rows = tiny_rows()
    tiers = [r["tier"] for r in rows]
    random.Random(7).shuffle(tiers)
    data = root / "shuffled.jsonl"
    data.write_text(
        "".join(json.dumps({**r, "tier": t}) + "\n" for r, t in zip(rows, tiers, strict=True))
    )
    cfg = TrainConfig(
        data=[str(data)], out=root / "shuffled", ladder=LADDER, holdout=False, progress=False
    )
    train_bundle(cfg, log=lambda *_: None)
    return cfg.out


@pytest.mark.slow
def test_gate_refuses_a_model_trained_on_shuffled_labels(tiny_base, shuffled, tmp_path):
    held = load_logs([write_logs(tmp_path / "held.jsonl")], LADDER).dataset
    base, worse = Router.load(tiny_base), Router.load(shuffled)
    cand_fig, base_fig, decision = gate_models(worse, base, held, LENIENT)
    assert decision.verdict is Verdict.WORSE and not decision.accept
    assert cand_fig.cost_at_target > base_fig.cost_at_target
    _, _, same = gate_models(base, base, held, LENIENT)  # an equal model passes (a tie)
    assert same.verdict is Verdict.TIE and same.accept


@pytest.mark.slow
def test_gate_judges_on_typical_cascade_logs(tiny_base, shuffled, tmp_path):
    # A gateway that starts most requests at the routed medium or large tier, few at small,
    # as in the published loop: only the small starts are complete as observed.
    starts = (1, 1, 2, 0, 1, 2)
    path = write_logs(tmp_path / "routed.jsonl", prefixes=PREFIXES, starts=starts)
    held = load_logs([path], LADDER).dataset
    base, worse = Router.load(tiny_base), Router.load(shuffled)
    crit = GateCriterion(min_rows=40)
    plain = dataclasses.replace(crit, infer_cheaper_failures=False)
    _, observed, blind = gate_models(worse, base, held, plain)
    assert blind.verdict is Verdict.UNKNOWN  # 24 observed complete rows of 144: cannot judge
    cand_fig, base_fig, decision = gate_models(worse, base, held, crit)
    # Failed first attempts (medium starts whose true tier is large) become complete too:
    # small is implied failed. Only first-attempt successes above small stay incomplete.
    first = [json.loads(line)["attempts"][0] for line in path.read_text().splitlines()]
    failed_first = sum(a["tier"] != "small" and a["outcome"] == "failure" for a in first)
    assert failed_first > 16
    assert (base_fig.observed_rows, base_fig.rows) == (observed.rows, 24 + failed_first)
    assert observed.rows == 24
    assert decision.verdict is Verdict.WORSE and not decision.accept, decision.reason
    assert cand_fig.cost_at_target > base_fig.cost_at_target
    _, _, same = gate_models(base, base, held, crit)
    assert same.verdict is Verdict.TIE and same.accept


@pytest.mark.slow
def test_retrain_promotes_a_candidate_that_is_not_worse(shuffled, tmp_path):
    # The base learned from shuffled tiers; the logs carry the true cascades, so the candidate
    # (base rows + log rows) must route the held-out requests more cheaply.
    models = tmp_path / "models"
    shutil.copytree(shuffled, models / "base")
    set_current(models, "base")
    logs = write_logs(tmp_path / "week1.jsonl")
    cfg = RetrainConfig(
        models / "current", [str(logs)], models / "cand", promote=True, criterion=LENIENT
    )
    res = retrain(cfg, log=lambda *_: None)
    assert res.decision.verdict is Verdict.BETTER, res.decision.reason
    assert res.promoted and not res.forced
    assert current_target(models) == (models / "cand").resolve()
    assert history(models)[-1]["action"] == "retrain"
    lineage = read_manifest(models / "cand").lineage
    assert lineage["base"]["version"] == read_manifest(models / "base").version
    assert lineage["logs"][0]["path"] == str(logs) and len(lineage["logs"][0]["sha256"]) == 64
    assert lineage["forced"] is False and lineage["promoted"] is True
    assert lineage["holdout"]["requests"] == round(0.2 * 108)
    assert lineage["gate"]["verdict"] in ("better", "tie")
    assert lineage["gate"]["candidate"]["rows"] == lineage["holdout"]["requests"]
    assert lineage["log_summary"]["per_tier"]["small"]["known"] == 108
    m = read_manifest(models / "cand")
    assert m.data["rows"]["test"] == lineage["holdout"]["requests"]
    assert m.data["rows"]["train"] == 36 + 108 - lineage["holdout"]["requests"]
    text = "\n".join(outcome_text(res, True))
    assert "gate: candidate is not worse" in text and "promoted:" in text
    held = lineage["holdout"]["requests"]  # every log cascade starts at small: all observed
    assert f"{held} have every tier's outcome observed, {held} once tiers cheaper" in text
    assert "scored requests by cheapest sufficient tier: small " in text
    assert lineage["gate"]["base"]["observed_rows"] == held


@pytest.mark.slow
def test_force_is_recorded_and_rollback_restores_the_pointer(models, tmp_path, capsys):
    logs = write_logs(tmp_path / "week2.jsonl", prefixes=PREFIXES[:2])
    # 72 requests -> 14 held out, under the default gate's 50 rows: the gate cannot judge.
    code = main(
        [
            "retrain",
            "--base",
            str(models / "current"),
            "--logs",
            str(logs),
            "--out",
            str(models / "forced"),
            "--force",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "cannot judge" in out and "promoted by --force" in out
    lineage = read_manifest(models / "forced").lineage
    assert lineage["forced"] is True and lineage["gate"]["verdict"] == "unknown"
    assert current_target(models) == (models / "forced").resolve()
    assert history(models)[-1]["action"] == "retrain --force"

    assert main(["models", "--models-dir", str(models), "list"]) == 0
    listing = capsys.readouterr().out
    assert "forced" in listing and "gate unknown, forced" in listing
    current_line = next(line for line in listing.splitlines() if line.startswith("*"))
    assert " forced " in current_line

    assert main(["models", "--models-dir", str(models), "rollback"]) == 0
    assert "-> base (rolled back from forced)" in capsys.readouterr().out
    assert current_target(models) == (models / "base").resolve()


# ---------------------------------------------------------------- rung models


def test_models_promote_rollback_and_list(models, tmp_path, capsys):
    shutil.copytree(models / "base", models / "other")
    assert main(["models", "--models-dir", str(models), "promote", "other"]) == 0
    assert "current -> other (was base)" in capsys.readouterr().out
    assert current_target(models) == (models / "other").resolve()
    assert main(["models", "--models-dir", str(models), "list", "--json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {e["name"]: e["current"] for e in entries} == {"base": False, "other": True}
    assert all("validation" in e["metrics"] for e in entries)
    assert main(["models", "--models-dir", str(models), "rollback"]) == 0
    assert current_target(models) == (models / "base").resolve()
    capsys.readouterr()
    assert main(["models", "--models-dir", str(models), "promote", "nope"]) == 2
    assert "is not a bundle" in capsys.readouterr().err
    assert current_target(models) == (models / "base").resolve()
    fresh = tmp_path / "fresh"
    shutil.copytree(models / "base", fresh / "only")
    assert main(["models", "--models-dir", str(fresh), "rollback"]) == 2  # nothing promoted
    assert "nothing to roll back to" in capsys.readouterr().err
    assert main(["models", "--models-dir", str(fresh), "list"]) == 0
    assert "only" in capsys.readouterr().out


def test_base_data_is_found_from_another_working_directory(tmp_path, monkeypatch):
    from serve.model.bundle import read_manifest
    from serve.model.ladder import default_ladder
    from tests.support.tiny_data import write_jsonl
    from train.fit.pipeline import TrainConfig, train_bundle
    from train.loop.retrain import base_data

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_jsonl(work / "tiny.jsonl")
    cfg = TrainConfig(
        data=["tiny.jsonl"], out=work / "models" / "b", ladder=default_ladder(), progress=False
    )
    train_bundle(cfg, log=lambda *_: None)
    monkeypatch.chdir(tmp_path)  # "tiny.jsonl" no longer resolves from here
    paths, _, warnings = base_data(read_manifest(cfg.out), None)
    assert paths == [str(work / "tiny.jsonl")] and warnings == []


def test_repeated_rollbacks_walk_back_through_promotions(tiny_base, tmp_path):
    from serve.model.bundle import BundleError
    from serve.model.registry import current_target, rollback

    models = tmp_path / "models"
    models.mkdir()
    for name in ("a", "b", "c"):
        shutil.copytree(tiny_base, models / name)
        set_current(models, name)
    assert rollback(models).name == "b"
    assert rollback(models).name == "a"
    with pytest.raises(BundleError, match="nothing to roll back"):
        rollback(models)
    assert current_target(models).name == "a"
    set_current(models, "c")  # promoting again starts a new step on top of "a"
    assert rollback(models).name == "a"
