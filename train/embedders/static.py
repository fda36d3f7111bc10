"""The default embedder: a static embedding distilled from all-MiniLM-L6-v2.

The model2vec recipe (embed every vocabulary token with the transformer, reduce with PCA,
weight by Zipf rank), wrapped in sentence-transformers' `StaticEmbedding`. It is computed once
and cached, since distillation takes ~20 s of transformer passes while serving it costs a table
look-up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.bundle import STATIC_EMBEDDINGS, TOKENIZER, EmbedderKind, EmbedderSpec
from serve.model.runtime import StaticEmbedder
from train.embedders.base import (
    TrainingEmbedder,
    _counter,
    _load_transformer,
    _model_fingerprint,
    _source_id,
    cache_dir,
    minilm_path,
)

STATIC_RECIPE_VERSION = 1
DEFAULT_STATIC_DIM = 256
DEFAULT_STATIC_TOKEN_CAP = 512


def _token_vectors(model: Any, batch_size: int, progress: bool) -> np.ndarray:
    """Mean-pooled output of `[CLS] token [SEP]` for every vocabulary token."""
    import torch
    from tqdm.auto import tqdm

    transformer = model[0].auto_model.eval()
    tok = model.tokenizer
    vocab = tok.vocab_size
    cls_id, sep_id = tok.cls_token_id, tok.sep_token_id
    out = np.zeros((vocab, transformer.config.hidden_size), dtype=np.float32)
    starts = range(0, vocab, batch_size)
    with torch.inference_mode():
        for start in tqdm(
            starts, desc="distilling static embedding", disable=not progress, unit="batch"
        ):
            ids = torch.arange(start, min(start + batch_size, vocab))
            n = ids.numel()
            batch = torch.stack([torch.full((n,), cls_id), ids, torch.full((n,), sep_id)], 1)
            hidden = transformer(input_ids=batch, attention_mask=torch.ones_like(batch))
            out[start : start + n] = hidden.last_hidden_state.mean(dim=1).numpy()
    return out


def _pca_zipf(vectors: np.ndarray, dim: int) -> np.ndarray:
    """PCA to `dim`, then weight token i by log(1 + i): frequent (low-id) tokens count less."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dim].T
    weights = np.log1p(np.arange(vectors.shape[0], dtype=np.float64))[:, None]
    return (reduced * weights).astype(np.float32)


def distill_static(
    model_path: Path | None = None, dim: int = DEFAULT_STATIC_DIM, progress: bool = True
) -> Path:
    """Distil (or reuse from cache) a static embedding; returns a folder with table + tokenizer."""
    model_path = Path(model_path) if model_path else minilm_path()
    key = f"static-v{STATIC_RECIPE_VERSION}-{_model_fingerprint(model_path)}-{dim}"
    folder = cache_dir() / key
    if (folder / STATIC_EMBEDDINGS).is_file() and (folder / TOKENIZER).is_file():
        return folder
    model = _load_transformer(model_path)
    table = _pca_zipf(_token_vectors(model, batch_size=1024, progress=progress), dim)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / STATIC_EMBEDDINGS, table, allow_pickle=False)
    shutil.copyfile(model_path / "tokenizer.json", tmp / TOKENIZER)
    (tmp / "source.json").write_text(json.dumps({"model": str(model_path), "dim": dim}))
    if folder.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, folder)
    return folder


def static_embedder(
    model_path: Path | None = None,
    dim: int = DEFAULT_STATIC_DIM,
    token_cap: int = DEFAULT_STATIC_TOKEN_CAP,
    progress: bool = True,
    with_model: bool = False,
) -> TrainingEmbedder:
    """The distilled table, encoded by the serving code itself. `with_model` also builds the
    sentence-transformers twin (imports torch, ~0.4 GB), which only the cross-check needs."""
    folder = distill_static(model_path, dim=dim, progress=progress)
    counter = _counter(folder / TOKENIZER, token_cap)
    table = np.load(folder / STATIC_EMBEDDINGS, allow_pickle=False)
    model = None
    if with_model:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

        module = StaticEmbedding(counter, embedding_weights=table)
        model = SentenceTransformer(modules=[module, Normalize()], device="cpu")
    source = json.loads((folder / "source.json").read_text())["model"]
    spec = EmbedderSpec(
        kind=EmbedderKind.STATIC,
        source=f"static distillation (PCA {dim}, Zipf weights) of {_source_id(Path(source))}",
        dim=dim,
        token_cap=token_cap,
        normalize=True,
        file=STATIC_EMBEDDINGS,
        notes=f"recipe v{STATIC_RECIPE_VERSION}: mean-pooled [CLS] t [SEP] per vocabulary token",
    )
    files = {STATIC_EMBEDDINGS: folder / STATIC_EMBEDDINGS, TOKENIZER: folder / TOKENIZER}
    serving = StaticEmbedder(table, counter, normalize=spec.normalize)
    return TrainingEmbedder(
        spec=spec, model=model, files=files, token_counter=counter, serving=serving
    )
