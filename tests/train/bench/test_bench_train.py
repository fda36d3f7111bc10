"""`rung bench train` end to end on hand-sized data (real child processes, real training)."""

from __future__ import annotations

import argparse
import csv
import json

import pytest

from tests.support.tiny_data import rows, write_jsonl
from train.bench.train import run

MODELS = ("mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview")
COSTS = (0.0001, 0.0003, 0.005)


def _routerbench_like(path) -> None:
    """A RouterBench-layout table whose outcomes follow the tiny set's labels."""
    order = {"small": 0, "medium": 1, "large": 2}
    header = ["", "sample_id", "prompt", "eval_name", *MODELS]
    header += [f"{m}|total_cost" for m in MODELS]
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for i, row in enumerate(rows()):
            level = order[row["tier"]]
            scores = [1.0 if t >= level else 0.0 for t in range(3)]
            out.writerow([i, row["id"], repr([row["text"]]), "tiny", *scores, *COSTS])


@pytest.mark.slow
def test_bench_train_times_training_and_scores_outcome_data(tmp_path, capsys):
    data = write_jsonl(tmp_path / "tiny.jsonl")
    shared = tmp_path / "shared"
    (shared / "routerbench").mkdir(parents=True)
    _routerbench_like(shared / "routerbench" / "tiny.csv")
    out = tmp_path / "bench.json"
    args = argparse.Namespace(data=str(data), shared=str(shared), cold=False, json=str(out))
    assert run(args) == 0
    report = json.loads(out.read_text())
    assert report["default_warm"]["seconds"] > 0
    assert report["default_warm"]["peak_rss_mib"] > 50
    quality = report["quality"]["RouterBench (3 tiers)"]
    assert 0 < quality["rows"] < 36
    assert 0 <= quality["auc_random"] <= quality["auc_oracle"] <= 1
    assert set(report["quality"]) == {"RouterBench (3 tiers)"}  # others absent: skipped
    assert "| warm cache |" in capsys.readouterr().out


def test_every_outcome_set_names_a_ladder_that_ships():
    """A wrong path here once made the bench skip two of the three sets without a word."""
    from train.bench.train import LADDERS, OUTCOME_SETS

    for _, _, ladder in OUTCOME_SETS:
        assert ladder is None or (LADDERS / ladder).is_file(), ladder
