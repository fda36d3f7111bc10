"""What keeps training and prediction bounded on big data: stratified samples, selection on a
sample with heads fitted on every row, --max-rows, and prediction that streams in batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

import train.fit.predict as predict_module
from serve.model.bundle import read_manifest
from serve.model.ladder import default_ladder
from serve.model.runtime import Router
from tests.support.tiny_data import write_jsonl
from train.bench.scale import perturbed_queries
from train.cli import main
from train.fit.heads import TierClassifier
from train.fit.pipeline import TrainConfig, train_bundle
from train.fit.sampling import outcome_strata, stratified_sample


def test_stratified_sample_keeps_every_strata_share():
    strata = np.array([0] * 70 + [1] * 20 + [2] * 10)
    idx = stratified_sample(strata, 30, seed=1)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30
    assert np.all(np.diff(idx) > 0)  # sorted, so row order is kept
    assert np.bincount(strata[idx]).tolist() == [21, 6, 3]
    np.testing.assert_array_equal(stratified_sample(strata, 500), np.arange(100))
    with pytest.raises(ValueError, match="positive"):
        stratified_sample(strata, 0)


def test_outcome_strata_tell_unknown_from_failed():
    suff = np.array([[1.0, 1.0], [0.0, 1.0], [np.nan, 1.0], [np.nan, 0.0]])
    keys = outcome_strata(suff)
    assert len(set(keys.tolist())) == 4


def test_heads_choose_c_on_a_sample_and_fit_on_every_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5)).astype(np.float32)
    label = np.digitize(x[:, 0] + 0.3 * rng.normal(size=600), [-0.4, 0.6])
    quality = (np.arange(3)[None, :] >= label[:, None]).astype(float)
    clf = TierClassifier(["s", "m", "l"], selection_rows=120).fit(x, quality)
    assert all(h[-1].n_features_in_ == 5 for h in clf.heads)
    # the final scaler saw every row, not the 120 of the sample
    assert all(h[0].n_samples_seen_ == 600 for h in clf.heads)
    assert min(clf.cv_auc) > 0.85


def test_max_rows_trains_on_a_stratified_sample_and_says_so(tmp_path):
    data = write_jsonl(tmp_path / "tiny.jsonl")
    n_rows = len(data.read_text().splitlines())
    cfg = TrainConfig(
        data=[str(data)],
        out=tmp_path / "m",
        ladder=default_ladder(),
        progress=False,
        holdout=False,
        max_rows=30,
        selection_rows=24,
    )
    logged: list[str] = []
    result = train_bundle(cfg, log=logged.append)
    sampling = read_manifest(result.bundle).data["sampling"]
    assert sampling == {**sampling, "rows_read": n_rows, "max_rows": 30, "selection_rows": 24}
    assert result.train_rows == 30
    tiers = read_manifest(result.bundle).data["rows_per_tier"]["train"]
    assert sorted(tiers.values()) == [10, 10, 10]  # 12 per tier in the file, kept per tier
    assert any("--max-rows 30" in line for line in logged)


def test_max_rows_below_ten_is_refused_in_one_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "tiny.jsonl")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--max-rows", "3"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_predict_streams_batches_and_matches_the_runtime(tiny_bundles, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_module, "BATCH", 7)  # many batches, one partial at the end
    rows = [{"id": f"r{i}", "text": f"request number {i}: summarise {'x ' * i}"} for i in range(23)]
    lines = [json.dumps(r) for r in rows]
    lines.insert(5, '{"id": "bad", "text": ""}')
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    argv = ["predict", "--model", str(tiny_bundles["a"]), "--data", str(data), "--out", str(out)]
    assert main(argv) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [r["id"] for r in rows]
    router = Router.load(tiny_bundles["a"])
    want = router.p_sufficient([r["text"] for r in rows])
    np.testing.assert_allclose([list(g["p_sufficient"].values()) for g in got], want, atol=1e-6)
    assert not (tmp_path / "out.jsonl.tmp").exists()


def test_predict_with_no_usable_row_leaves_no_output(tiny_bundles, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a", "text": ""}\n')
    out = tmp_path / "out.jsonl"
    argv = ["predict", "--model", str(tiny_bundles["a"]), "--data", str(data), "--out", str(out)]
    assert main(argv) == 2
    assert "no usable rows" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "out.jsonl.tmp").exists()


def test_batch_embedding_matches_the_single_text_path(tiny_bundles):
    router = Router.load(tiny_bundles["a"])
    texts = ["hello there", "Ünïcode façade, naïve café", "", "x " * 700, "Plan a launch."]
    batch, counts = router.embedder.embed(texts)
    for text, vec, n in zip(texts, batch, counts, strict=True):
        one, n_one = router.embedder.embed([text])
        np.testing.assert_allclose(vec, one[0], atol=1e-6)
        assert n == n_one[0]


def test_perturbed_queries_keep_tiers_and_make_unique_ids(tmp_path):
    src = write_jsonl(tmp_path / "tiny.jsonl")
    out = perturbed_queries(src, 100, tmp_path / "big.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 100 and len({r["id"] for r in rows}) == 100
    assert {r["tier"] for r in rows} == {"small", "medium", "large"}
    assert all(r["text"].strip() for r in rows)
