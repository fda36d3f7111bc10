"""`rung eval` reads its rows once, in batches: the same report whatever the batch size, the
same figures as whole-array metrics, and memory that does not grow with the texts."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from serve.model.ladder import default_ladder
from serve.model.runtime import Router
from tests.support.tiny_data import rows as tiny_rows
from tests.support.tiny_data import write_jsonl
from train.data.load import load_dataset
from train.data.stream import RowStream
from train.evaluation import metrics as m
from train.evaluation.evaluate import compare, evaluate
from train.evaluation.scoring import score_tallies
from train.fit.pipeline import TrainConfig, train_bundle

# Memory per added row. Held after the pass: quality (float32, exact for 0/1 outcomes), cost
# (float64) and p_sufficient's non-top columns (float32): 44 bytes for three tiers, measured
# 46 with the chunk lists; peak 48, with the end-of-pass set of distinct p values. Loading the
# table whole (the evaluation before streaming) adds ~760 bytes a row on these short texts.
MAX_HELD_BYTES_PER_ROW = 56
MAX_PEAK_BYTES_PER_ROW = 100


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream")
    data = write_jsonl(root / "tiny.jsonl")
    cfg = TrainConfig(data=[str(data)], out=root / "b", ladder=default_ladder(), progress=False)
    train_bundle(cfg, log=lambda *_: None)
    return {"root": root, "data": data, "bundle": cfg.out}


def _labelled(path: Path, n: int) -> Path:
    """`n` labelled rows cycling the tiny texts, each with its own id and a varied word."""
    base = tiny_rows()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = base[i % len(base)]
            row = {**r, "id": f"{r['id']}-{i}", "text": f"{r['text']} (ref {i % 997})"}
            fh.write(json.dumps(row) + "\n")
    return path


def _routerbench(path: Path, n: int) -> Path:
    """The RouterBench layout: graded scores, some unknown, measured costs in some cells."""
    ladder = default_ladder()
    models = ladder.model_columns()
    rng = np.random.default_rng(7)
    header = ["", "sample_id", "prompt", "eval_name", *models, *(f"{x}|total_cost" for x in models)]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            r = tiny_rows()[i % 36]
            scores = [round(float(s), 3) for s in np.sort(rng.random(3))]
            if i % 5 == 0:
                scores[0] = ""  # unknown outcome
            scale = 0.5 + rng.random()
            costs = ["" if i % 3 == 0 else f"{c * scale:.6f}" for c in (0.001, 0.004, 0.03)]
            w.writerow([i, f"rb-{i}", repr([r["text"]]), f"set{i % 3}", *scores, *costs])
    return path


def _clean(doc: dict) -> dict:
    doc = dict(doc)
    doc.pop("created_at", None)
    for rep in doc.get("reports", []):
        rep.pop("created_at", None)
    return doc


def _assert_same(a, b, path="") -> None:
    """Equal structure and strings; numbers equal up to float summation order."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=path)
    else:
        assert a == b, path


@pytest.mark.parametrize("threshold", [None, 0.6])
def test_small_batches_give_the_one_batch_report(bundle, tmp_path, threshold):
    bench = _routerbench(tmp_path / "bench.csv", 90)
    for data, split in (([bundle["data"]], "all"), ([bench], "holdout"), ([bench], "all")):
        whole = evaluate(bundle["bundle"], data, split=split, threshold=threshold, batch=10_000)
        tiny = evaluate(bundle["bundle"], data, split=split, threshold=threshold, batch=7)
        _assert_same(_clean(whole.to_dict()), _clean(tiny.to_dict()))
        assert tiny.data["rows"] == whole.data["rows"] > 0


def test_compare_streams_every_model_over_the_same_rows(bundle, tmp_path):
    bench = _routerbench(tmp_path / "bench.csv", 120)
    models = [bundle["bundle"], bundle["bundle"]]
    whole = compare(models, [bench], batch=10_000).to_dict()
    tiny = compare(models, [bench], batch=11).to_dict()
    _assert_same(_clean(whole), _clean(tiny))
    first, second = tiny["reports"]
    assert first["data"]["cost"] == second["data"]["cost"]
    assert first["always"] == second["always"] and first["data"]["rows"] == 120


def test_streamed_threshold_curve_matches_whole_array_metrics(bundle, tmp_path):
    """The threshold rule's curve and default point, recomputed with metrics.py on the whole
    table at once (the evaluation before streaming), match the batch-by-batch report."""
    bench = _routerbench(tmp_path / "bench.csv", 150)
    got = evaluate(bundle["bundle"], [bench], threshold=0.55, batch=16).to_dict()
    ds = load_dataset([bench], default_ladder())
    router = Router.load(bundle["bundle"])
    p = router.p_sufficient(ds.texts)
    q = ds.quality
    assert got["data"]["cost"]["measured_cells"] == int((~np.isnan(ds.cost)).sum()) > 0
    # Costs: measured where present, else tokens x prices (every row's count is under the cap).
    counts = router.estimates(ds.texts).tokens
    est = np.column_stack([t.estimate_cost(counts.astype(float)) for t in ds.ladder.tiers])
    cost = np.where(np.isnan(ds.cost), est, ds.cost)
    d = m.decide(p, 0.55)
    point = m.operating_point(d, q, cost)
    assert got["default"]["quality"] == pytest.approx(point.quality, rel=1e-12)
    assert got["default"]["cost_usd"] == pytest.approx(point.cost, rel=1e-12)
    taus = np.unique(np.concatenate([np.unique(p[:, :-1]), np.linspace(0, 1, 101), [0, 1]]))
    pts = [x for x in m.threshold_sweep(p, q, cost, taus) if np.isfinite(x.quality)]
    cheapest = m.operating_point(np.zeros(len(q), int), q, cost)
    expected = m.upper_envelope([*pts, cheapest])
    np.testing.assert_allclose(
        got["envelopes"]["router"], [[x.cost, x.quality] for x in expected], rtol=1e-9
    )


def test_stream_reports_bad_rows_and_inputs_like_load_dataset(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = [json.dumps(r) for r in tiny_rows()]
    bad = ['{"id": "x", "text": ""}', "not json", '{"text": "hi"}'] * 6
    path.write_text("\n".join(good[:10] + bad + good[10:]) + "\n")
    stream = RowStream([path], default_ladder(), batch=4)
    batches = list(stream)
    ds = load_dataset([path], default_ladder())
    assert [i for b in batches for i in b.ids] == ds.ids
    np.testing.assert_array_equal(np.concatenate([b.quality for b in batches]), ds.quality)
    assert stream.inputs == ds.inputs
    assert stream.bad_rows == len(ds.problems) == 18
    assert stream.problems == ds.problems[:10]


def test_memory_grows_by_a_few_bytes_per_row_not_by_the_texts(bundle, tmp_path, monkeypatch):
    """tracemalloc (every Python and numpy allocation) on N and 4N rows, the bundle loaded
    beforehand: what the pass holds when scoring starts, and the peak, grow per added row by
    the compact arrays' bytes, far below what loading the table whole adds."""
    import train.evaluation.evaluate as ev

    held: list[int] = []

    def observed(model):  # records what the pass left in memory, then scores as usual
        held.append(tracemalloc.get_traced_memory()[0])
        return score_tallies(model)

    monkeypatch.setattr(ev, "score_tallies", observed)
    router = Router.load(bundle["bundle"])
    n = 1500
    small, large = _labelled(tmp_path / "s.jsonl", n), _labelled(tmp_path / "l.jsonl", 4 * n)

    def peak(run) -> int:
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    evaluate(router, [large], batch=256)  # warm the tokenizer caches (chunks, words) for both
    held.clear()
    peaks = [peak(lambda p=p: evaluate(router, [p], batch=256)) for p in (small, large)]
    held_per_row = (held[1] - held[0]) / (3 * n)
    peak_per_row = (peaks[1] - peaks[0]) / (3 * n)
    loads = [peak(lambda p=p: load_dataset([p], default_ladder())) for p in (small, large)]
    whole_table = (loads[1] - loads[0]) / (3 * n)
    assert held_per_row < MAX_HELD_BYTES_PER_ROW, f"{held_per_row:.1f} bytes held per row"
    assert peak_per_row < MAX_PEAK_BYTES_PER_ROW, f"{peak_per_row:.1f} bytes peak per row"
    assert whole_table > 4 * MAX_PEAK_BYTES_PER_ROW, f"{whole_table:.0f}"  # the bound bites


def test_progress_hears_every_row_read(bundle):
    heard: list[int] = []
    data = [bundle["data"]]
    res = evaluate(bundle["bundle"], data, split="holdout", batch=5, progress=heard.append)
    assert sum(heard) == 36 and max(heard) == 5  # every row read, split or not
    assert res.data["rows"] < 36
