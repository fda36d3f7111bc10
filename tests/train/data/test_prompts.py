"""`rung predict` reads only prompts: any layout, whatever its outcome columns say."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from train.cli import main
from train.data.files import detect_format
from train.data.load import read_texts
from train.data.types import SourceFormat

# Models that are not on the default ladder: predicting must not care.
OTHER_MODELS = ("acme/tiny-1b", "acme/huge-400b")
PROMPTS = ["hi there!", "Prove that there are infinitely many primes.", "Translate 'cat'."]


def routerbench_csv(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "prompt", "eval_name", *OTHER_MODELS])
        for i, text in enumerate(PROMPTS):
            w.writerow([f"s{i}", repr([text]), "mmlu", "1.0", ""])
        w.writerow(["s-bad", "not a list", "mmlu", "0", "1"])
    return path


def routellm_csv(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "prompt", *OTHER_MODELS])
        for i, text in enumerate(PROMPTS):
            w.writerow([i, text, "", "0.5"])
    return path


def llmrouter_json(path: Path) -> Path:
    scores = {OTHER_MODELS[0]: 1}
    items = [{"id": i, "question": t, "scores": scores} for i, t in enumerate(PROMPTS)]
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def logs_jsonl(path: Path) -> Path:
    lines = [
        {"request_id": "r0", "text": PROMPTS[0], "attempts": [{"tier": "mini", "outcome": "x"}]},
        # attempt layout: two lines of one request, text on the second
        {"request_id": "r1", "tier": "mini", "outcome": "failure"},
        {"request_id": "r1", "text": PROMPTS[1], "tier": "maxi", "outcome": "success"},
        {"request_id": "r2", "messages": [{"role": "user", "content": PROMPTS[2]}], "attempts": []},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


LAYOUTS = {
    SourceFormat.ROUTERBENCH: (routerbench_csv, "rb.csv", ["s0", "s1", "s2"]),
    SourceFormat.ROUTELLM: (routellm_csv, "rl.csv", ["0", "1", "2"]),
    SourceFormat.LLMROUTER: (llmrouter_json, "lr.json", ["0", "1", "2"]),
    SourceFormat.LOGS: (logs_jsonl, "logs.jsonl", ["r0", "r1", "r2"]),
}


@pytest.mark.parametrize("fmt", list(LAYOUTS), ids=lambda f: f.value)
def test_prompts_are_read_from_every_layout_whatever_its_models(tmp_path, fmt):
    write, name, ids = LAYOUTS[fmt]
    path = write(tmp_path / name)
    assert detect_format(path) is fmt
    rows, problems = read_texts([path])
    assert [(r.id, r.text) for r in rows] == list(zip(ids, PROMPTS, strict=True))
    if fmt is SourceFormat.ROUTERBENCH:
        assert [p.reason for p in problems] == ["prompt is not a stringified list"]
    else:
        assert problems == []


def test_predict_routes_a_routerbench_file_with_other_models(tiny_bundles, tmp_path, capsys):
    data = routerbench_csv(tmp_path / "prompts.csv")
    out = tmp_path / "pred.jsonl"
    argv = ["predict", "--model", str(tiny_bundles["a"]), "--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["s0", "s1", "s2"]
    assert all(r["tier"] in ("small", "medium", "large") for r in records)
    assert "wrote 3 predictions" in capsys.readouterr().out


def test_scoring_still_needs_the_outcomes(tiny_bundles, tmp_path, capsys):
    data = routerbench_csv(tmp_path / "prompts.csv")
    assert main(["eval", "--model", str(tiny_bundles["a"]), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "the ladder names model(s)" in err and "Traceback" not in err
