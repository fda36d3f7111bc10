"""The transformer embedder: ONNX export, the int8-vs-fp32 check, and train/serve parity."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from serve.model.bundle import (
    ENCODER,
    TOKENIZER,
    BundleError,
    EmbedderKind,
    EmbedderSpec,
    Truncation,
    read_manifest,
)
from serve.model.ladder import default_ladder
from serve.model.runtime import Router, TransformerEmbedder, load_embedder
from tests.support.tiny_data import LARGE, MEDIUM, SMALL, write_jsonl
from train.cli import main
from train.embedders.base import EmbedderChoice, EmbedderError, TrainingEmbedder, minilm_path
from train.embedders.transformer import (
    MIN_INT8_COSINE,
    MIN_INT8_MEAN_COSINE,
    build_encoder,
    transformer_embedder,
)
from train.fit.pipeline import TrainConfig, train_bundle

QUERIES = [
    "hi",
    "Prove the Riemann hypothesis for function fields.",
    "Summarise this: " + "the meeting moved to Friday. " * 80,
    "",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache, so the module always exercises a fresh export (~20 s, once)."""
    root = tmp_path_factory.mktemp("rung-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNG_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def embedder(cache: Path) -> TrainingEmbedder:
    return transformer_embedder(minilm_path(), progress=False)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
def test_export_is_int8_checked_against_fp32_and_cached(embedder, cache):
    import onnx

    spec = embedder.spec
    assert spec.kind is EmbedderKind.TRANSFORMER and spec.file == ENCODER
    assert (spec.dim, spec.token_cap, spec.normalize) == (384, 254, True)
    assert set(embedder.files) == {ENCODER, TOKENIZER}
    folder = embedder.files[ENCODER].parent
    report = json.loads((folder / "report.json").read_text())
    assert report["export_min_cosine"] >= 0.9999
    assert report["int8_min_cosine"] >= MIN_INT8_COSINE
    assert report["int8_mean_cosine"] >= MIN_INT8_MEAN_COSINE
    assert report["int8_mb"] < report["fp32_mb"] / 3

    graph = onnx.load(str(embedder.files[ENCODER]))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.graph.output] == ["last_hidden_state"]
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for d in dims)  # batch and sequence are dynamic
    assert sum(n.op_type == "MatMulInteger" for n in graph.graph.node) == 36  # 6 layers x 6

    # Independent of the build's own check: texts it never saw, against sentence-transformers.
    from train.embedders.base import _load_transformer

    texts = SMALL + MEDIUM + LARGE
    reference = _load_transformer(minilm_path()).encode(texts, normalize_embeddings=True)
    cos = _cosines(embedder.model.encode(texts, show_progress_bar=False), reference)
    assert cos.min() >= MIN_INT8_COSINE and cos.mean() >= MIN_INT8_MEAN_COSINE

    stamp = embedder.files[ENCODER].stat().st_mtime_ns
    again = transformer_embedder(minilm_path(), progress=False)
    assert again.files[ENCODER] == embedder.files[ENCODER]
    assert again.files[ENCODER].stat().st_mtime_ns == stamp  # built once, then reused
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no scratch left behind


@pytest.mark.slow
def test_training_features_equal_single_query_serving(embedder):
    """Batched training encodes give bit for bit what one request at a time gets."""
    batch = embedder.encode(QUERIES, progress=False, batch_size=3)
    runtime = embedder.model.runtime
    assert isinstance(runtime, TransformerEmbedder)
    for row, text in enumerate(QUERIES):
        vec, counts = runtime.embed([text])
        np.testing.assert_array_equal(batch[row, :-1], vec[0])
        np.testing.assert_array_equal(batch[row, -1], np.log1p(np.float32(counts[0])))
    np.testing.assert_array_equal(embedder.token_counts(QUERIES), runtime.embed(QUERIES)[1])
    assert np.allclose(np.linalg.norm(batch[:3, :-1], axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_long_text_keeps_its_head_and_its_tail(embedder):
    spec = embedder.spec
    assert (spec.truncation, spec.head_tokens) == (Truncation.HEAD_TAIL, 64)
    head = "alpha " * 100
    middle, other_middle = "word " * 2000, "token " * 2000
    tail = "beta " * 200 + "finally, which answer is right: the first or the second one?"
    texts = [head + middle + tail, head + other_middle + tail, head + middle + "gamma " * 200]
    np.testing.assert_array_equal(embedder.token_counts(texts), [254, 254, 254])
    vec = embedder.encode(texts, progress=False)
    assert np.all(np.isfinite(vec))
    np.testing.assert_array_equal(vec[0], vec[1])  # only the middle differs, and it is cut
    assert _cosines(vec[:1, :-1], vec[2:, :-1])[0] < 0.99  # a different tail is seen

    runtime = embedder.model.runtime
    untruncated = Tokenizer.from_file(str(embedder.files[TOKENIZER]))
    full = untruncated.encode(texts[0], add_special_tokens=False).ids
    assert len(full) > 2000
    kept = runtime.token_ids(texts[0])
    assert len(kept) == 256 and kept[1:-1] == full[:64] + full[-190:]
    assert kept[0] == runtime.tokenizer.token_to_id("[CLS]")
    assert kept[-1] == runtime.tokenizer.token_to_id("[SEP]")


@pytest.mark.slow
def test_head_tail_changes_nothing_below_the_cap_and_old_specs_stay_head(embedder):
    folder = embedder.files[ENCODER].parent
    old = EmbedderSpec.from_dict(
        {k: v for k, v in embedder.spec.to_dict().items() if k not in ("truncation", "head_tokens")}
    )
    assert (old.truncation, old.head_tokens) == (Truncation.HEAD, 0)
    head_only = load_embedder(folder, old)
    short = [*QUERIES[:2], QUERIES[3], "word " * 254]  # the last is exactly at the cap
    np.testing.assert_array_equal(head_only.embed(short)[0], embedder.model.runtime.embed(short)[0])

    long = ["word " * 2000 + "and a tail that falls past the token cap entirely", "word " * 2000]
    vec, counts = head_only.embed(long)
    np.testing.assert_array_equal(counts, [254, 254])
    np.testing.assert_array_equal(vec[0], vec[1])  # head only: the tail is never seen


@pytest.mark.slow
def test_a_lowered_serving_cap_keeps_head_and_tail(embedder):
    runtime = load_embedder(embedder.files[ENCODER].parent, embedder.spec)
    assert isinstance(runtime, TransformerEmbedder)
    runtime.tokenizer.enable_truncation(
        max_length=8 + 2
    )  # what serve.api.state.apply_token_cap does
    text = "one two three four five six seven eight nine ten"
    full = Tokenizer.from_file(str(embedder.files[TOKENIZER])).encode(text).ids[1:-1]
    assert len(full) == 10
    assert runtime.token_ids(text)[1:-1] == full[:8]  # head_tokens >= cap: the head only
    runtime.head_tokens = 3
    assert runtime.token_ids(text)[1:-1] == full[:3] + full[-5:]
    assert runtime.embed([text])[1].tolist() == [8]


def test_spec_truncation_round_trips_and_is_validated():
    spec = EmbedderSpec(
        kind=EmbedderKind.TRANSFORMER,
        source="m",
        dim=4,
        token_cap=254,
        file=ENCODER,
        truncation=Truncation.HEAD_TAIL,
        head_tokens=64,
    )
    assert EmbedderSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad in (0, 254, -1):
        with pytest.raises(BundleError, match="0 < head_tokens < token_cap"):
            replace(spec, head_tokens=bad)
    with pytest.raises(BundleError, match="only meaningful with head_tail"):
        replace(spec, truncation=Truncation.HEAD)
    with pytest.raises(BundleError, match="transformer only"):
        replace(spec, kind=EmbedderKind.STATIC)
    with pytest.raises(ValueError, match="'tail'"):
        EmbedderSpec.from_dict({**spec.to_dict(), "truncation": "tail"})


@pytest.mark.slow
def test_transformer_bundle_serves_what_training_computed(embedder, tmp_path):
    import joblib

    data = write_jsonl(tmp_path / "tiny.jsonl")
    cfg = TrainConfig(
        data=[str(data)],
        out=tmp_path / "models" / "tx",
        ladder=default_ladder(),
        embedder=EmbedderChoice.TRANSFORMER,
        progress=False,
    )
    train_bundle(cfg, log=lambda *_: None)
    manifest = read_manifest(cfg.out)
    assert manifest.embedder == embedder.spec
    assert set(manifest.files) == {"classifier.onnx", ENCODER, TOKENIZER}

    heads = joblib.load(cfg.out / "training" / "heads.joblib")["heads"]
    features = embedder.encode(QUERIES, progress=False)
    raw = np.column_stack([h.predict_proba(features)[:, 1] for h in heads])  # every tier
    expected = np.maximum.accumulate(np.column_stack([raw[:, :-1], np.ones(len(QUERIES))]), axis=1)
    router = Router.load(cfg.out)
    np.testing.assert_allclose(router.features(QUERIES), features, rtol=0, atol=0)
    np.testing.assert_allclose(router.p_sufficient(QUERIES), expected, atol=1e-5)
    np.testing.assert_allclose(router.p_sufficient(QUERIES[1:2]), expected[1:2], atol=1e-5)
    assert router.smoke().shape == (3,)
    np.testing.assert_allclose(router.estimates(QUERIES).p_correct, raw, atol=1e-5)


@pytest.mark.slow
def test_a_model_without_mean_pooling_is_refused(tmp_path):
    model = tmp_path / "cls-model"
    shutil.copytree(
        minilm_path(), model, symlinks=True, ignore=shutil.ignore_patterns("model.safetensors")
    )
    (model / "model.safetensors").symlink_to(minilm_path() / "model.safetensors")
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    with pytest.raises(EmbedderError, match="pooling mode 'cls' is not supported"):
        build_encoder(model, tmp_path / "out")


def test_cli_reports_a_missing_transformer_in_one_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "tiny.jsonl")
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--embedder",
            "transformer",
            "--embedder-path",
            str(tmp_path / "no-such-model"),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "not a local sentence-transformers model folder" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
