"""Inference on a bundle with ONNX Runtime, tokenizers and numpy only.

Everything that can happen at load time happens in `Router.load`; the per-request path is a
tokenizer call, a table gather (or one encoder run), and one tiny ONNX run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from serve.model.bundle import (
    CLASSIFIER,
    TOKENIZER,
    BundleError,
    EmbedderKind,
    EmbedderSpec,
    Manifest,
    Truncation,
    read_manifest,
    verify_files,
)
from serve.model.fasttok import AsciiWordPiece

SMOKE_TEXT = "Hello! Can you summarise this paragraph in one sentence?"


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # One thread each: a gateway sidecar runs one request at a time per worker, and thread
    # hand-offs cost more than these tiny graphs take to run.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"cannot load ONNX graph {path.name}: {exc}") from None


class Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (embeddings [n, dim] float32, content token counts [n])."""
        ...


class StaticEmbedder:
    """Mean of per-token vectors, L2-normalised: the model2vec recipe, no neural network."""

    def __init__(self, table: np.ndarray, tokenizer: Tokenizer, normalize: bool) -> None:
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.dim = int(table.shape[1])
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.ascii = AsciiWordPiece.for_tokenizer(tokenizer)  # single-text shortcut, or None

    def embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if len(texts) == 1:
            ids = np.asarray(self.tokenizer.encode(texts[0], add_special_tokens=False).ids)
            counts = np.array([ids.size])
            vec = self.table[ids].mean(axis=0, keepdims=True) if ids.size else self._zeros(1)
        else:
            token_ids = self._batch_ids(texts)
            counts = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(texts))
            vec = self._zeros(len(texts))
            # Row by row: gathering every token's vector first (then reduceat) wrote ~100 KB
            # per text and ran 30x slower on long texts than summing each text's rows in place.
            table = self.table
            for row, row_ids in enumerate(token_ids):
                if row_ids:
                    vec[row] = table.take(row_ids, axis=0).sum(axis=0) / len(row_ids)
        if self.normalize:
            norms = np.linalg.norm(vec, axis=1, keepdims=True)
            vec = vec / np.maximum(norms, 1e-12)
        return vec.astype(np.float32, copy=False), counts

    def _batch_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text: the exact ASCII shortcut where it applies (about 7x cheaper
        than building `Encoding`s), one `encode_batch` call for the rest."""
        fast = self.ascii
        out: list[list[int] | None] = (
            [fast.ids(t) for t in texts] if fast is not None else [None] * len(texts)
        )
        rest = [i for i, ids in enumerate(out) if ids is None]
        if rest:
            encs = self.tokenizer.encode_batch([texts[i] for i in rest], add_special_tokens=False)
            for i, enc in zip(rest, encs, strict=True):
                out[i] = enc.ids
        return out  # type: ignore[return-value]

    def _zeros(self, n: int) -> np.ndarray:
        return np.zeros((n, self.dim), dtype=np.float32)

    def embed_one_into(self, text: str, out: np.ndarray) -> int:
        """Single-text fast path: write the embedding into `out[:dim]`, return the token count.

        Same numbers as `embed([text])` with fewer numpy calls (the server's hot path): with
        normalisation on, the sum normalises to the same unit vector as the mean.
        """
        ids = self.ascii.ids(text) if self.ascii is not None else None
        if ids is None:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        n = len(ids)
        if not n:
            out[: self.dim] = 0.0
            return 0
        vec = self.table.take(ids, axis=0).sum(axis=0)
        if self.normalize:
            out[: self.dim] = vec * (1.0 / max(math.sqrt(float(vec.dot(vec))), 1e-12))
        else:
            out[: self.dim] = vec / n
        return n


class TransformerEmbedder:
    """An ONNX sentence-transformer encoder with mean pooling, one text per encoder run.

    One text per run, unpadded: dynamic int8 quantization picks activation scales per tensor,
    so in a padded batch a text's embedding would depend on its batch-mates (measured: up to
    0.05 per coordinate for MiniLM). Per text, a batch gives exactly the single-query answer.

    `self.tokenizer` carries the cap (its truncation, which an operator may lower); with
    head_tail truncation, text is tokenized in full by an untruncated copy and cut here.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        dim: int,
        normalize: bool,
        truncation: Truncation = Truncation.HEAD,
        head_tokens: int = 0,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.dim = dim
        self.normalize = normalize
        self.truncation = truncation
        self.head_tokens = head_tokens
        self.input_names = {i.name for i in session.get_inputs()}
        self.output_name = session.get_outputs()[0].name
        if truncation is Truncation.HEAD_TAIL:
            self._full = Tokenizer.from_str(tokenizer.to_str())
            self._full.no_truncation()
            self._specials = self._full.encode("", add_special_tokens=True).ids
            if len(self._specials) != 2:
                raise BundleError("head_tail truncation needs a tokenizer adding [CLS] and [SEP]")

    def token_ids(self, text: str) -> list[int]:
        """Encoder input ids: [CLS], the content tokens kept, [SEP]."""
        if self.truncation is Truncation.HEAD:
            return list(self.tokenizer.encode(text, add_special_tokens=True).ids)
        content = self._full.encode(text, add_special_tokens=False).ids
        limits = self.tokenizer.truncation
        cap = int(limits["max_length"]) - 2 if limits else len(content)
        if len(content) > cap:
            head = min(self.head_tokens, cap)
            content = content[:head] + content[len(content) - (cap - head) :]
        return [self._specials[0], *content, self._specials[1]]

    def embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vec = np.zeros((len(texts), self.dim), dtype=np.float32)
        counts = np.zeros(len(texts), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = np.array([self.token_ids(text)], np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if "token_type_ids" in self.input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run([self.output_name], feeds)[0]
            vec[row] = hidden[0].mean(axis=0)
            counts[row] = max(ids.shape[1] - 2, 0)  # [CLS] and [SEP] are not content
        if self.normalize:
            vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec.astype(np.float32, copy=False), counts


def load_tokenizer(path: Path, spec: EmbedderSpec) -> Tokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad files
        raise BundleError(f"cannot load tokenizer {path.name}: {exc}") from None
    tok.no_padding()
    cap = spec.token_cap + (2 if spec.kind is EmbedderKind.TRANSFORMER else 0)
    tok.enable_truncation(max_length=cap)
    return tok


def load_embedder(root: Path, spec: EmbedderSpec) -> Embedder:
    tokenizer = load_tokenizer(root / TOKENIZER, spec)
    if spec.kind is EmbedderKind.STATIC:
        try:
            table = np.load(root / spec.file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot load static embeddings {spec.file}: {exc}") from None
        if table.ndim != 2 or table.shape[1] != spec.dim:
            raise BundleError(f"{spec.file} has shape {table.shape}, manifest says dim {spec.dim}")
        if table.shape[0] < tokenizer.get_vocab_size():
            raise BundleError(f"{spec.file} has fewer rows than the tokenizer's vocabulary")
        return StaticEmbedder(table, tokenizer, spec.normalize)
    return TransformerEmbedder(
        _session(root / spec.file),
        tokenizer,
        spec.dim,
        spec.normalize,
        truncation=spec.truncation,
        head_tokens=spec.head_tokens,
    )


def extra_features(names: tuple[str, ...], counts: np.ndarray) -> np.ndarray:
    """Features beside the embedding; mean pooling forgets length, so we hand it back."""
    cols = []
    for name in names:
        if name == "log_tokens":
            cols.append(np.log1p(counts.astype(np.float32)))
        else:
            raise BundleError(f"unknown extra feature {name!r}")
    return np.stack(cols, axis=1) if cols else np.zeros((len(counts), 0), np.float32)


def monotone_p_sufficient(p_tier: np.ndarray) -> np.ndarray:
    """Append the top tier (1.0) and take the running max along the ladder.

    `p_tier[:, t]` estimates P(tier t suffices). Under an ordered ladder, if a cheaper tier
    suffices so does this one, so P(this tier or a cheaper one suffices) is at least the max
    over cheaper tiers; the running max makes the output non-decreasing by construction.
    """
    n = p_tier.shape[0]
    full = np.concatenate([p_tier.astype(np.float64), np.ones((n, 1))], axis=1)
    return np.clip(np.maximum.accumulate(full, axis=1), 0.0, 1.0)


def decide(
    p_sufficient: np.ndarray, threshold: float, min_tier: int = 0, max_tier: int | None = None
) -> np.ndarray:
    """Cheapest tier whose p_sufficient reaches the threshold, clamped to [min_tier, max_tier]."""
    top = p_sufficient.shape[1] - 1
    hi = top if max_tier is None else max_tier
    ok = p_sufficient >= threshold
    ok[:, top] = True
    tiers = ok.argmax(axis=1)
    return np.clip(tiers, min_tier, hi)


@dataclass
class Router:
    """A loaded bundle: text in, p_sufficient per tier out."""

    root: Path
    manifest: Manifest
    embedder: Embedder
    classifier: ort.InferenceSession

    @classmethod
    def load(cls, bundle: str | Path, verify: bool = True) -> Router:
        root = Path(bundle).resolve()
        if not root.is_dir():
            raise BundleError(f"model bundle not found: {bundle}")
        manifest = read_manifest(root)
        if verify:
            verify_files(root, manifest)
        embedder = load_embedder(root, manifest.embedder)
        session = _session(root / manifest.classifier.get("file", CLASSIFIER))
        router = cls(root, manifest, embedder, session)
        router._check_signature()
        return router

    def _check_signature(self) -> None:
        inp = self.classifier.get_inputs()[0]
        want = self.manifest.embedder.n_features
        if inp.shape[-1] not in (want, None) and not isinstance(inp.shape[-1], str):
            raise BundleError(f"classifier expects {inp.shape[-1]} features, embedder gives {want}")
        self._input = inp.name
        self._output = self.manifest.classifier.get("output", "p_tier")
        self._n_tiers = len(self.manifest.ladder)
        self._extras = self.manifest.embedder.extra_features

    @property
    def tier_names(self) -> list[str]:
        return self.manifest.ladder.names

    def features(self, texts: list[str]) -> np.ndarray:
        vec, counts = self.embedder.embed(texts)
        if not self._extras:
            return vec
        return np.concatenate([vec, extra_features(self._extras, counts)], axis=1)

    def p_sufficient(self, texts: list[str]) -> np.ndarray:
        """[n, n_tiers] probabilities, non-decreasing along the ladder, last column 1.0."""
        if not texts:
            return np.zeros((0, self._n_tiers))
        feats = self.features(texts)
        p_tier = self.classifier.run([self._output], {self._input: feats})[0]
        if p_tier.shape != (len(texts), self._n_tiers - 1):
            raise BundleError(f"classifier returned shape {p_tier.shape}")
        return monotone_p_sufficient(p_tier)

    def p_sufficient_one(self, text: str) -> list[float]:
        """`p_sufficient([text])[0]` as a list, for one text: the server's per-request path.

        With a static embedder this skips the batch machinery (about a third of the time of
        a short request); other embedders fall back to the batch path.
        """
        embedder = self.embedder
        if not isinstance(embedder, StaticEmbedder) or any(e != "log_tokens" for e in self._extras):
            return [float(x) for x in self.p_sufficient([text])[0]]
        feats = np.empty((1, embedder.dim + len(self._extras)), dtype=np.float32)
        n = embedder.embed_one_into(text, feats[0])
        if self._extras:
            feats[0, embedder.dim :] = math.log1p(n)
        p_tier = self.classifier.run([self._output], {self._input: feats})[0]
        if p_tier.shape != (1, self._n_tiers - 1):
            raise BundleError(f"classifier returned shape {p_tier.shape}")
        out, running = [], 0.0
        for p in p_tier[0].tolist():  # running max + clip, as in monotone_p_sufficient
            running = p if p > running else running
            out.append(min(max(running, 0.0), 1.0))
        out.append(1.0)
        return out

    def smoke(self) -> np.ndarray:
        """One real query end to end; raises if the bundle cannot answer sensibly."""
        p = self.p_sufficient([SMOKE_TEXT])
        if not np.all(np.isfinite(p)) or p.shape != (1, self._n_tiers):
            raise BundleError("smoke query produced non-finite or mis-shaped output")
        return p[0]
