"""The stacked classifier graph decides exactly as the per-head graph every schema-2 bundle
carried before it, and both load, pass the serving checks and answer on both paths."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import onnx

from serve.model.bundle import CLASSIFIER, read_manifest, sha256_file, write_manifest
from serve.model.checks import check_bundle
from serve.model.runtime import Router

TEXTS = [
    "hi",
    "What is the capital of France?",
    "Prove that there are infinitely many primes, then formalise the proof in Lean 4.",
    "Write a thread-safe LRU cache in Rust with generics, tests and benchmarks. " * 8,
    "Résumé: übersetze diesen Absatz ins Englische, bitte.",
]
# Nodes of the stacked graph per head family (tests/train/fit/test_families.py checks them).
STACKED_NODES = {"logreg": 2, "mlp": 4, "ensemble": 8}


def _nodes(bundle) -> int:
    return len(onnx.load(str(bundle / CLASSIFIER)).graph.node)


def test_the_stacked_graph_is_smaller_and_has_no_unused_output(tiny_bundles, per_head_bundle):
    new = tiny_bundles["a"]
    router = Router.load(new)
    classifier = router.manifest.classifier
    assert "lengths_output" not in classifier  # no tier learned its answer length
    assert [o.name for o in router.classifier.get_outputs()] == ["p_correct"]
    assert classifier["graph_nodes"] == _nodes(new)
    if classifier["family"] in STACKED_NODES:
        assert _nodes(new) == STACKED_NODES[classifier["family"]]
    assert _nodes(new) < _nodes(per_head_bundle)
    assert set(classifier["constant_heads"]) == {"large"}
    assert 0.5 < classifier["constant_heads"]["large"] < 1.0


def test_a_per_head_bundle_loads_and_decides_exactly_as_the_stacked_one(
    tiny_bundles, per_head_bundle
):
    new, old = Router.load(tiny_bundles["a"]), Router.load(per_head_bundle)
    assert old._outputs == ["p_correct"]  # the lengths output is named but not run
    a, b = new.estimates(TEXTS), old.estimates(TEXTS)
    assert a.p_correct is not None and b.p_correct is not None
    np.testing.assert_allclose(a.p_correct, b.p_correct, atol=1e-6)
    np.testing.assert_allclose(a.p_sufficient, b.p_sufficient, atol=1e-6)
    np.testing.assert_allclose(a.cost, b.cost, rtol=1e-12)
    for setting in [new.default_setting, *new.knob_settings(7)]:
        np.testing.assert_array_equal(new.decide(a, setting), old.decide(b, setting))
        for text in TEXTS:
            hi = len(new.tier_names) - 1
            got, want = new.decide_one(text, setting, 0, hi), old.decide_one(text, setting, 0, hi)
            assert got[0] == want[0]
            np.testing.assert_allclose(got[1], want[1], atol=1e-6)
            np.testing.assert_allclose(got[3], want[3], rtol=1e-12)
    for bundle in (tiny_bundles["a"], per_head_bundle):
        check_bundle(bundle)  # what promotion and a server's start run


def test_the_single_text_path_gives_each_thread_its_own_bound_row(tiny_bundles):
    """Short texts are decided on the event loop and long ones on the threadpool at the same
    time: each thread writes its features into its own bound input row."""
    router = Router.load(tiny_bundles["a"])
    want = {text: router.estimates_one(text) for text in TEXTS}
    batch = router.estimates(TEXTS)
    for text, row in zip(TEXTS, batch.p_sufficient, strict=True):
        np.testing.assert_allclose(want[text][0], row, atol=1e-6)
    texts = TEXTS * 60
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(router.estimates_one, texts))
    assert got == [want[t] for t in texts]


def test_learned_lengths_are_read_from_the_second_output_on_both_paths(tiny_bundles, tmp_path):
    """Bundle `a` with the medium tier's answer length learned (a ridge on the features): the
    graph gains one Gemm, and both inference paths price that tier from it."""
    import joblib
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from train.fit.export import correctness_to_onnx

    src, dst = tiny_bundles["a"], tmp_path / "lengths"
    shutil.copytree(src, dst)
    router = Router.load(src)
    x = router.features(TEXTS * 4).astype(np.float32)
    log_len = 2.0 + 3.0 * np.abs(x[:, :8]).sum(axis=1)  # varies with the text
    ridge = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(1e-3))]).fit(x, log_len)
    heads = joblib.load(src / "training" / "heads.joblib")["heads"]
    fixed = float(np.log1p(300))
    graph = correctness_to_onnx(heads, [fixed, ridge, fixed], x.shape[1])
    assert len(graph.graph.node) == _nodes(src) + 1
    (dst / CLASSIFIER).write_bytes(graph.SerializeToString())
    m = read_manifest(dst)
    classifier = {**m.classifier, "lengths_output": "log_out_tokens"}
    cost_model = {**m.cost_model, "learned": [False, True, False]}
    files = {**m.files, CLASSIFIER: sha256_file(dst / CLASSIFIER)}
    write_manifest(dst, replace(m, classifier=classifier, cost_model=cost_model, files=files))

    learned = check_bundle(dst)
    assert learned._outputs == ["p_correct", "log_out_tokens"]
    est, base = learned.estimates(TEXTS), router.estimates(TEXTS)
    np.testing.assert_allclose(est.p_correct, base.p_correct, atol=1e-6)
    np.testing.assert_allclose(est.cost[:, [0, 2]], base.cost[:, [0, 2]], rtol=1e-9)
    n_in = np.array(
        [
            learned.cost_model.input_tokens(c, len(t))
            for c, t in zip(learned.embedder.embed(TEXTS)[1], TEXTS, strict=True)
        ]
    )
    tier = learned.manifest.ladder.tiers[1]
    answer = np.expm1(ridge.predict(x[: len(TEXTS)]))
    want = (n_in * tier.input_price + answer * tier.output_price) / 1e6
    np.testing.assert_allclose(est.cost[:, 1], want, rtol=1e-4)
    assert np.ptp(est.cost[:, 1] - base.cost[:, 1]) > 0  # priced per text, not a constant
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(learned.estimates_one(text)[2], est.cost[i], rtol=1e-6)
