"""`rung eval` and the evaluation API end to end on tiny real bundles and hand-made files."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from serve.model.ladder import Ladder, default_ladder
from serve.model.runtime import Router, decide
from tests.support.paths import SHARED
from tests.support.tiny_data import rows as tiny_rows
from tests.support.tiny_data import write_jsonl
from train.cli import main
from train.data.load import load_dataset
from train.data.types import split_holdout
from train.evaluation.evaluate import EvalError, Split, compare, evaluate
from train.evaluation.report import render_html, write_report
from train.fit.pipeline import TrainConfig, train_bundle

LONG = "Please proofread this memo. " + "The quarterly figures moved again today. " * 80


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A bundle trained on 36 labelled rows less the hash split ("held"), a copy that claims
    to have trained on every row ("all": only training/train_ids.json differs, which serving
    never reads), and an evaluation file with one text longer than the 512-token cap."""
    root = tmp_path_factory.mktemp("eval")
    data = write_jsonl(root / "tiny.jsonl")
    cfg = TrainConfig(
        data=[str(data)], out=root / "models" / "held", ladder=default_ladder(), progress=False
    )
    train_bundle(cfg, log=lambda *_: None)
    every = shutil.copytree(cfg.out, root / "models" / "all")
    (every / "training" / "train_ids.json").write_text(json.dumps([r["id"] for r in tiny_rows()]))
    extra = root / "extra.jsonl"
    extra.write_text(
        json.dumps({"id": "long-1", "family": "memo", "tier": "medium", "text": LONG}) + "\n"
    )
    return {"data": data, "held": cfg.out, "all": every, "extra": extra}


def _routerbench_csv(path: Path, ladder: Ladder, costs: list[float]) -> Path:
    """The RouterBench layout with the ladder's models: tiny texts, scores from their labels,
    a fixed measured cost per tier."""
    models = ladder.model_columns()
    header = ["", "sample_id", "prompt", "eval_name", *models, *(f"{m}|total_cost" for m in models)]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i, r in enumerate(tiny_rows()):
            label = ladder.index(r["tier"])
            scores = [1.0 if t >= label else 0.0 for t in range(len(models))]
            w.writerow([i, r["id"], repr([r["text"]]), f"set{i % 2}", *scores, *costs])
    return path


def test_evaluate_labelled_rows_counts_tokens_untruncated(tiny):
    res = evaluate(tiny["held"], [tiny["data"], tiny["extra"]])
    doc = res.to_dict()
    assert doc["data"]["rows"] == 37 and doc["tiers"] == ["small", "medium", "large"]
    texts = [r["text"] for r in tiny_rows()] + [LONG]
    tok = Tokenizer.from_file(str(tiny["held"] / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    counts = np.array([len(tok.encode(t, add_special_tokens=False).ids) for t in texts])
    assert counts[-1] > 512  # the long text is counted whole, not at the serving cap
    assert doc["data"]["cost"]["input_tokens_total"] == counts.sum()
    assert doc["data"]["cost"]["estimated_cells"] == 37 * 3
    for a, tier in zip(doc["always"], default_ladder().tiers, strict=True):
        expected = (counts.sum() * tier.input_price + 37 * 300 * tier.output_price) / 1e6
        assert a["cost"] == pytest.approx(expected)
    # Labelled rows: quality 1 if the routed tier >= the label, so the oracle scores 1.
    assert doc["baselines"]["oracle"]["quality"] == 1.0
    assert doc["always"][-1]["quality"] == 1.0
    assert sum(doc["classification"]["label_counts"]) == 37


def test_default_operating_point_matches_the_served_router(tiny):
    res = evaluate(tiny["held"], [tiny["data"]])
    router = Router.load(tiny["held"])
    texts = [r["text"] for r in tiny_rows()]
    d = decide(router.p_sufficient(texts), router.manifest.threshold)
    labels = np.array([default_ladder().index(r["tier"]) for r in tiny_rows()])
    share = np.bincount(d, minlength=3) / len(d)
    assert list(res.metrics["default"]["traffic_share"].values()) == pytest.approx(share)
    assert res.metrics["default"]["quality"] == pytest.approx(np.mean(d >= labels))
    assert res.metrics["classification"]["accuracy"] == pytest.approx(np.mean(d == labels))
    assert res.metrics["default"]["threshold"] == router.manifest.threshold


def test_splits_select_the_fixed_hash_split(tiny):
    ids = [r["id"] for r in tiny_rows()]
    held = int(split_holdout(ids).sum())
    assert evaluate(tiny["held"], [tiny["data"]], split="holdout").data["rows"] == held
    assert evaluate(tiny["held"], [tiny["data"]], split=Split.TRAIN).data["rows"] == 36 - held
    unseen = evaluate(tiny["held"], [tiny["data"]], split="unseen")
    assert unseen.data["rows"] == held  # the bundle trained on every other row


def test_outcome_table_uses_measured_costs_and_ladder_override(tiny, tmp_path):
    data = _routerbench_csv(tmp_path / "bench.csv", default_ladder(), [0.001, 0.003, 0.05])
    res = evaluate(tiny["held"], [data])
    cost = res.data["cost"]
    assert (cost["measured_cells"], cost["estimated_cells"]) == (36 * 3, 0)
    assert [a["cost"] for a in res.metrics["always"]] == pytest.approx([0.036, 0.108, 1.8])
    assert [g["name"] for g in res.metrics["breakdowns"]["group"]] == ["set0", "set1"]
    # A ladder with the bundle's tier names but other prices changes estimated costs only.
    cheap = Ladder.from_dict(
        {
            "tiers": [
                {"name": n, "input_price": p, "output_price": p}
                for n, p in (("small", 1), ("medium", 2), ("large", 4))
            ]
        }
    )
    doc = evaluate(tiny["held"], [tiny["data"]], ladder=cheap).to_dict()
    assert doc["ladder"]["tiers"][2]["input_price"] == 4
    ratio = doc["always"][2]["cost"] / doc["always"][0]["cost"]
    assert ratio == pytest.approx(4.0)


def test_compare_scores_models_on_the_same_rows(tiny):
    cmp = compare([tiny["held"], tiny["all"]], [tiny["data"]], split="holdout")
    a, b = cmp.results
    assert (
        a.data["rows"] == b.data["rows"] == int(split_holdout([r["id"] for r in tiny_rows()]).sum())
    )
    assert a.metrics["always"] == b.metrics["always"]  # same rows, same costs
    summary = cmp.summary()
    keys = {
        "envelope",
        "cost_to_90",
        "cost_to_95",
        "cost_to_100",
        "mean_ece",
        "ece",
        "quality",
        "cost_usd",
        "auc",
        "gap_closed",
        "saving_vs_random_95",
    }
    assert all(keys <= set(s) for s in summary)
    assert [s["model"] for s in summary] == [str(tiny["held"]), str(tiny["all"])]
    assert cmp.to_dict()["schema"] == "rung-eval-compare/1"


def test_compare_refuses_when_no_row_is_unseen_by_both(tiny):
    with pytest.raises(EvalError, match="no overlapping rows"):
        compare([tiny["held"], tiny["all"]], [tiny["data"]], split="unseen")


def test_report_json_schema_and_self_contained_html(tiny, tmp_path):
    doc = evaluate(tiny["held"], [tiny["data"]]).to_dict()
    paths = write_report(doc, tmp_path / "rep")
    saved = json.loads(paths[0].read_text())
    assert saved["schema"] == "rung-eval/1"
    for key in (
        "model",
        "data",
        "ladder",
        "tiers",
        "axis",
        "always",
        "router_sweep",
        "envelopes",
        "auc",
        "gap_closed",
        "targets",
        "at_tier_cost",
        "two_tier",
        "default",
        "baselines",
        "classification",
        "calibration",
        "mean_ece",
        "breakdowns",
        "verdict",
    ):
        assert key in saved, key
    assert set(saved["auc"]) >= {
        "router",
        "router_clamps",
        "random",
        "heuristic",
        "oracle",
        "always:small",
        "always:large",
    }
    assert "NaN" not in paths[0].read_text() and "Infinity" not in paths[0].read_text()
    page = paths[1].read_text()
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    assert "<link" not in page and "<script" not in page
    assert html.escape(saved["verdict"]["summary"]) in page


def test_compare_html_shows_every_model(tiny):
    doc = compare([tiny["held"], tiny["all"]], [tiny["data"]]).to_dict()
    page = render_html(doc)
    assert str(tiny["held"]) in page and str(tiny["all"]) in page
    assert page.count("data:image/png;base64,") == 1 + 2 * 2  # curve + per-model figures


def test_cli_eval_and_compare(tiny, tmp_path, capsys):
    rep = tmp_path / "rep"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny["held"]),
                "--data",
                str(tiny["data"]),
                "--report",
                str(rep),
                "--split",
                "all",
                "--plot",
                str(tmp_path / "curve.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "router @" in out and "oracle" in out and "normalised AUC" in out
    assert (rep / "report.json").is_file() and (rep / "report.html").is_file()
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    argv = ["eval", "--compare", str(tiny["held"]), str(tiny["all"]), "--data", str(tiny["data"])]
    assert main(argv) == 0
    assert "gap closed" in capsys.readouterr().out
    assert main([*argv, "--threshold", "0.5"]) == 2
    assert "--threshold / --quality apply to --model only" in capsys.readouterr().err


def test_cli_bad_inputs_exit_2_with_one_line(tiny, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    two = tmp_path / "two.toml"
    two.write_text('[[tiers]]\nname = "small"\n[[tiers]]\nname = "large"\n')
    missing_model = tmp_path / "ladder.toml"
    missing_model.write_text(
        "".join(
            f'[[tiers]]\nname = "{n}"\nmodel = "{n}-model"\n' for n in ("small", "medium", "large")
        )
    )
    bench = _routerbench_csv(tmp_path / "bench.csv", default_ladder(), [0.001, 0.003, 0.05])
    cases = [
        (["--model", str(tiny["held"]), "--data", str(empty)], "empty"),
        (["--model", str(tiny["held"]), "--data", str(tiny["data"]), "--ladder", str(two)], "tier"),
        (
            ["--model", str(tiny["held"]), "--data", str(bench), "--ladder", str(missing_model)],
            "lacks",
        ),
        (
            [
                "--compare",
                str(tiny["held"]),
                str(tiny["all"]),
                "--data",
                str(tiny["data"]),
                "--split",
                "unseen",
            ],
            "no overlapping rows",
        ),
        (["--model", str(tmp_path / "nope"), "--data", str(tiny["data"])], "not found"),
        (
            ["--model", str(tiny["held"]), "--data", str(tiny["data"]), "--threshold", "2"],
            "threshold",
        ),
    ]
    for argv, message in cases:
        assert main(["eval", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("rung eval: error:") and message in err, err
        assert "Traceback" not in err


def test_zero_prices_are_refused(tiny):
    free = Ladder.from_dict({"tiers": [{"name": n} for n in ("small", "medium", "large")]})
    with pytest.raises(EvalError, match="costs the same"):
        evaluate(tiny["held"], [tiny["data"]], ladder=free)


def test_dataset_input_is_accepted(tiny):
    ds = load_dataset([tiny["data"]], default_ladder())
    res = evaluate(tiny["held"], ds, split="holdout")
    assert res.data["rows"] == int(split_holdout(ds.ids).sum())


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "routerbench").is_dir(), reason="../shared/data absent")
def test_routerbench_holdout_end_to_end(tmp_path):
    cfg = TrainConfig(
        data=[str(SHARED / "routerbench")],
        out=tmp_path / "rb",
        ladder=default_ladder(),
        progress=False,
    )
    train_bundle(cfg, log=lambda *_: None)
    doc = evaluate(cfg.out, [SHARED / "routerbench"], split="holdout").to_dict()
    assert doc["data"]["cost"]["estimated_cells"] == 0  # RouterBench carries its costs
    assert doc["auc"]["oracle"] > doc["auc"]["random"]
    assert {g["name"] for g in doc["breakdowns"]["group"]} >= {"mbpp"}
    assert doc["default"]["cost_usd"] < doc["axis"]["top_cost"]


def test_compare_reports_the_promotion_gate_verdict(tiny, capsys):
    cmp = compare([tiny["held"], tiny["all"]], [tiny["data"]])
    (gate,) = cmp.to_dict()["gate"]
    assert (gate["candidate"], gate["base"]) == (str(tiny["all"]), str(tiny["held"]))
    # 36 rows are under the gate's 50-row minimum: it must refuse to judge, not guess.
    assert gate["verdict"] == "unknown" and "need 50" in gate["reason"]
    argv = ["eval", "--compare", str(tiny["held"]), str(tiny["all"]), "--data", str(tiny["data"])]
    assert main(argv) == 0
    assert "promotion gate, " in capsys.readouterr().out
