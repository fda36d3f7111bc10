"""`rung simulate`: a hand-made outcome table replayed as a gateway cascade, known exactly."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from serve.model.ladder import default_ladder
from serve.model.runtime import Router, decide
from tests.support.loop_fixtures import tiny_base_bundle
from train.cli import main
from train.data.logset import load_logs
from train.loop.simulate import SimConfig, SimulateError, cascade, simulate

LADDER = default_ladder()
MODELS = LADDER.model_columns()
# id: (scores small/medium/large, costs small/medium/large); "" is unknown / not recorded.
TABLE = {
    "easy": (("1.0", "1.0", "1.0"), ("0.001", "0.002", "0.03")),
    "middle": (("0.0", "1.0", "1.0"), ("0.001", "0.002", "0.03")),
    "hard": (("0.0", "0.0", "1.0"), ("0.001", "0.002", "0.03")),
    "unsolved": (("0.0", "0.0", "0.0"), ("0.001", "0.002", "0.03")),
    "no-small-score": (("", "1.0", "1.0"), ("", "0.002", "0.03")),
    "no-medium-cost": (("0.0", "1.0", "1.0"), ("0.001", "", "0.03")),
}
EXPECTED = {  # starting at small: the cascade and what each attempt costs
    "easy": [("small", "success", 0.001)],
    "middle": [("small", "failure", 0.001), ("medium", "success", 0.002)],
    "hard": [("small", "failure", 0.001), ("medium", "failure", 0.002), ("large", "success", 0.03)],
    "unsolved": [
        ("small", "failure", 0.001),
        ("medium", "failure", 0.002),
        ("large", "failure", 0.03),
    ],
    "no-medium-cost": [("small", "failure", 0.001), ("medium", "success", None)],
}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return tiny_base_bundle(tmp_path_factory)


def _outcomes(path: Path) -> Path:
    header = ["", "sample_id", "prompt", "eval_name", *MODELS, *(f"{m}|total_cost" for m in MODELS)]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, (rid, (scores, costs)) in enumerate(TABLE.items()):
            w.writerow(
                [i, rid, repr([f"Question {rid}: what is {i} + {i}?"]), "toy", *scores, *costs]
            )
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cascade_stops_at_the_first_success_or_the_top():
    assert cascade([0.0, 1.0, 1.0], 0, 0.5) == [(0, False), (1, True)]
    assert cascade([0.0, 0.0, 0.0], 1, 0.5) == [(1, False), (2, False)]
    assert cascade([math.nan, 1.0, 1.0], 0, 0.5) is None
    assert cascade([math.nan, 1.0, 1.0], 1, 0.5) == [(1, True)]


def test_simulate_replays_a_known_cascade(tiny_base, tmp_path):
    table = _outcomes(tmp_path / "outcomes.csv")
    out = tmp_path / "logs.jsonl"
    # Threshold 0 routes every request to small, so each cascade is known exactly.
    summary = simulate(SimConfig([str(table)], tiny_base, out, threshold=0.0, seed=3))
    records = _read(out)
    assert {r["request_id"] for r in records} == set(EXPECTED)
    assert summary.skipped == ["no-small-score: unknown outcome on the way up from small"]
    version = Router.load(tiny_base).manifest.version
    tokens = Router.load(tiny_base).embedder.embed(["Question no-medium-cost: what is 5 + 5?"])[1]
    for r in records:
        got = [(a["tier"], a["outcome"], a["cost_usd"]) for a in r["attempts"]]
        want = EXPECTED[r["request_id"]]
        assert [g[:2] for g in got] == [w[:2] for w in want]
        for (_, _, cost), (tier, _, expected) in zip(got, want, strict=True):
            if expected is None:  # no recorded cost: the ladder's price for the tokens
                expected = LADDER.tiers[LADDER.index(tier)].estimate_cost(float(tokens[0]))
            assert cost == pytest.approx(expected)
        assert r["routed_tier"] == "small" and r["explore"] is False
        assert r["model_version"] == version
    stamps = [r["ts"] for r in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert (summary.requests, summary.attempts, summary.escalations) == (5, 11, 6)
    assert summary.solved == 4 and summary.answered == {"small": 1, "medium": 2, "large": 1}
    # The logs read back into exactly the outcomes that were replayed.
    ds = load_logs([out], LADDER).dataset
    assert ds.quality[ds.ids.index("hard")].tolist() == [0.0, 0.0, 1.0]
    assert ds.quality[ds.ids.index("easy")].tolist() == [1.0, 1.0, 1.0]


def test_exploration_starts_one_tier_below_the_decision(tiny_base, tmp_path):
    table = _outcomes(tmp_path / "outcomes.csv")
    router = Router.load(tiny_base)
    texts = {rid: f"Question {rid}: what is {i} + {i}?" for i, rid in enumerate(TABLE)}
    decided = dict(zip(texts, decide(router.p_sufficient(list(texts.values())), 1.0), strict=True))
    plain, explored = tmp_path / "plain.jsonl", tmp_path / "explored.jsonl"
    simulate(SimConfig([str(table)], tiny_base, plain, threshold=1.0, explore=0.0))
    summary = simulate(
        SimConfig([str(table)], tiny_base, explored, threshold=1.0, explore=0.9, seed=1)
    )
    assert not any(r["explore"] for r in _read(plain))
    records = _read(explored)
    assert summary.explore == sum(r["explore"] for r in records) > 0
    for r in records:
        start = LADDER.index(r["attempts"][0]["tier"])
        assert start == decided[r["request_id"]] - r["explore"]
        assert r["routed_tier"] == r["attempts"][0]["tier"]
    # The same seed replays the same order and the same exploration draws.
    again = tmp_path / "again.jsonl"
    simulate(SimConfig([str(table)], tiny_base, again, threshold=1.0, explore=0.9, seed=1))
    assert again.read_text() == explored.read_text()


def test_simulate_cli_and_bad_options(tiny_base, tmp_path, capsys):
    table = _outcomes(tmp_path / "outcomes.csv")
    out = tmp_path / "cli.jsonl"
    assert (
        main(
            [
                "simulate",
                "--outcomes",
                str(table),
                "--model",
                str(tiny_base),
                "--out",
                str(out),
                "--explore",
                "0.05",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    assert f"wrote {len(_read(out))} requests" in capsys.readouterr().out
    assert (
        main(
            [
                "simulate",
                "--outcomes",
                str(table),
                "--model",
                str(tiny_base),
                "--out",
                str(out),
                "--explore",
                "1.5",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--explore must lie in [0, 1)" in err and "Traceback" not in err
    ladder = tmp_path / "two.toml"
    ladder.write_text(
        '[[tiers]]\nname = "cheap"\nmodel = "mistralai/mistral-7b-chat"\n'
        '[[tiers]]\nname = "dear"\nmodel = "gpt-4-1106-preview"\n'
    )
    with pytest.raises(SimulateError, match="differ from the model's"):
        from serve.model.ladder import Ladder

        simulate(SimConfig([str(table)], tiny_base, out, ladder=Ladder.from_toml(ladder)))


def test_loop_demo_slices_are_a_fixed_partition():
    from train.bench.loop import slice_of

    ids = [f"sample-{i}" for i in range(3000)]
    first = [slice_of(i, 0) for i in ids]
    assert first == [slice_of(i, 0) for i in ids]  # a fixed hash: the same every run
    shares = {s: first.count(s) / len(ids) for s in "ABC"}
    assert shares == pytest.approx({"A": 0.2, "B": 0.5, "C": 0.3}, abs=0.03)
    assert first != [slice_of(i, 1) for i in ids]  # another salt, another slicing
