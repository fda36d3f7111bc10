"""`rung predict`: per-row decisions as served, and `--sweep N` for tracing the rule's curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serve.model.runtime import Router
from tests.support.paths import SHARED
from tests.support.tiny_data import rows as tiny_rows
from train.cli import main
from train.fit.predict import predict_files, sweep_path


def test_sweep_writes_n_tiers_per_row_from_cheapest_to_best(tiny_bundles, tmp_path, capsys):
    bundle = tiny_bundles["a"]
    data = bundle.parent / "tiny.jsonl"
    out = tmp_path / "preds.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(bundle),
                "--data",
                str(data),
                "--out",
                str(out),
                "--sweep",
                "7",
            ]
        )
        == 0
    )
    assert "sweep settings" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 36
    router = Router.load(bundle)
    est = router.estimates([r["text"] for r in tiny_rows()])
    index = {n: i for i, n in enumerate(router.tier_names)}
    for i, row in enumerate(rows):
        assert set(row) >= {"id", "tier", "p_sufficient", "p_correct", "cost_usd", "sweep"}
        assert len(row["sweep"]) == 7
        tiers = [index[t] for t in row["sweep"]]
        costs = est.cost[i, tiers]
        assert np.all(np.diff(costs) >= 0), row  # more quality never costs less, per row
    doc = json.loads(sweep_path(out).read_text())
    assert doc["knob"] == "quality" and len(doc["settings"]) == 7
    qualities = [s["quality"] for s in doc["settings"]]
    assert qualities == sorted(qualities) and qualities[-1] == 1.0
    assert doc["default"]["quality"] == 0.95


def test_predict_without_sweep_keeps_the_row_shape_and_refuses_bad_options(
    tiny_bundles, tmp_path, capsys
):
    bundle = tiny_bundles["a"]
    data = bundle.parent / "tiny.jsonl"
    out = tmp_path / "p.jsonl"
    assert predict_files(bundle, [str(data)], out, quality=0.9) == 36
    assert "sweep" not in json.loads(out.read_text().splitlines()[0])
    assert not sweep_path(out).exists()
    base = ["predict", "--model", str(bundle), "--data", str(data), "--out", str(out)]
    assert main([*base, "--quality", "0.9", "--threshold", "0.5"]) == 2
    assert "quality or threshold, not both" in capsys.readouterr().err
    assert main([*base, "--sweep", "-3"]) == 2
    assert "--sweep must lie in" in capsys.readouterr().err


def test_old_threshold_bundles_sweep_the_threshold(legacy_bundle, tmp_path):
    out = tmp_path / "old.jsonl"
    predict_files(
        legacy_bundle, [str(legacy_bundle.parent.parent / "x")], out, sweep=5
    ) if False else None
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "1", "text": "hello", "tier": "small"}) + "\n")
    predict_files(legacy_bundle, [str(data)], out, sweep=5)
    row = json.loads(out.read_text())
    assert len(row["sweep"]) == 5 and row["sweep"][-1] == "large" and "p_correct" not in row
    doc = json.loads(sweep_path(out).read_text())
    assert doc["knob"] == "threshold"
    assert [s["value"] for s in doc["settings"]] == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.slow
def test_sweep_on_routerbench_traces_a_curve_whose_cost_rises_along_it(
    routerbench_bundle, tmp_path
):
    from train.data.load import load_dataset
    from train.data.types import split_holdout

    bundle, _ = routerbench_bundle
    out = tmp_path / "rb.jsonl"
    predict_files(bundle, [str(SHARED / "routerbench")], out, sweep=25)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    router = Router.load(bundle)
    ds = load_dataset([str(SHARED / "routerbench")], router.manifest.ladder)
    held = ds.subset(split_holdout(ds.ids))
    index = {n: i for i, n in enumerate(router.tier_names)}
    sweep = np.array([[index[t] for t in rows[i]["sweep"]] for i in held.ids])
    assert sweep.shape == (len(held), 25)
    idx = np.arange(len(held))
    cost = np.array([held.cost[idx, sweep[:, j]].sum() for j in range(25)])
    quality = np.array([held.quality[idx, sweep[:, j]].mean() for j in range(25)])
    assert np.all(np.diff(cost) >= -1e-9)  # recorded cost never falls along the sweep
    assert cost[-1] > 5 * cost[0] and quality[-1] > quality[0] + 0.1


@pytest.mark.parametrize("sweep", [0, 3])
@pytest.mark.parametrize("with_source", [False, True])
def test_lines_are_what_json_dumps_gives_for_the_record(tiny_bundles, sweep, with_source):
    """The %-template writer against the record built as a dict and passed to json.dumps."""
    from train.data.types import TextRow
    from train.fit.predict import _records

    router = Router.load(tiny_bundles["a"])
    texts = ["add 2 and 3", 'quote " and \\ backslash', "prove the theorem ü", "x"]
    ids = ["7", "007", 'id with "quotes" and ü', "-3"]
    chunk = [
        TextRow(f"dir/{k}.jsonl", i, t) for k, (i, t) in enumerate(zip(ids, texts, strict=True))
    ]
    setting = router.setting()
    knob = router.knob_settings(sweep) if sweep else []
    got = _records(router, chunk, setting, knob, with_source).splitlines()

    names = router.tier_names
    est = router.estimates(texts)
    tiers = router.decide(est, setting)
    for i, row in enumerate(chunk):
        record = {
            "id": int(row.id) if row.id == "7" else row.id,
            "tier": names[tiers[i]],
            "p_sufficient": dict(zip(names, est.p_sufficient[i].round(6).tolist(), strict=True)),
            "cost_usd": float(est.cost[i, tiers[i]]),
            "p_correct": dict(zip(names, est.p_correct[i].round(6).tolist(), strict=True)),
        }
        if knob:
            record["sweep"] = [names[router.decide(est, s)[i]] for s in knob]
        if with_source:
            record["source"] = row.source
        assert got[i] == json.dumps(record)
