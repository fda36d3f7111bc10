"""The transformer embedder: a local sentence-transformers model as an int8 ONNX encoder.

Built once per model and cached: export the underlying transformer to ONNX (fp32), check it
against sentence-transformers, quantize it (dynamic int8, per-channel weights), check the int8
encoder against the fp32 sentence-transformers embeddings, and refuse to build if either check
fails. Training features then come from the int8 encoder run by serving's own
`TransformerEmbedder`, so what the heads were fitted on is exactly what the server computes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve.model.bundle import ENCODER, TOKENIZER, EmbedderKind, EmbedderSpec, Truncation
from serve.model.runtime import TransformerEmbedder, load_embedder
from train.embedders.base import (
    DEFAULT_TRANSFORMER_TOKEN_CAP,
    EmbedderError,
    TrainingEmbedder,
    _load_transformer,
    _source_id,
    cache_dir,
)

RECIPE_VERSION = 1
OPSET = 17
OUTPUT = "last_hidden_state"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the order BERT-style forward takes
MIN_EXPORT_COSINE = 0.9999  # fp32 ONNX vs sentence-transformers: only float reordering differs
# int8 vs fp32 over CHECK_TEXTS. Measured for all-MiniLM-L6-v2 (onnxruntime 1.32): min 0.973
# ("ok"), mean 0.991; over 232 of data/queries' texts min 0.973, mean 0.993. A broken export or
# pooling gives cosines far below these bars; ordinary int8 noise stays well above them.
MIN_INT8_COSINE = 0.95
MIN_INT8_MEAN_COSINE = 0.98
# Text past the cap keeps its first HEAD_TOKENS and last (cap - HEAD_TOKENS) content tokens.
# Gateway prompts put pasted context or few-shot examples first and the question last;
# 64 keeps an instruction preamble, and the 190-token tail holds a typical question with its
# options (RouterBench's 5-shot ARC and Winogrande prompts end that way).
HEAD_TOKENS = 64

# Varied on purpose: chit-chat, one-word replies, code, maths, other scripts, a long request and
# text past the token cap, since quantization error is worst on very short inputs.
CHECK_TEXTS = (
    "ok",
    "thanks!",
    "",
    "What is 2 + 2?",
    "What's the capital of Australia?",
    "hey, can you help me with something quick",
    "Translate 'good morning' into Spanish.",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "Summarise the following paragraph in one sentence: the meeting was moved to Thursday "
    "because the venue was double-booked, and the agenda now includes the budget review.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n# make this iterative",
    "Why does my Python script raise KeyError: 'user_id' when the JSON has that field?",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 5; explain this query",
    "Prove that the square root of 2 is irrational.",
    "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph. When does the "
    "second catch up?",
    "Draft a polite email declining a meeting invitation next Tuesday.",
    "Review this indemnification clause for risks to the licensee and propose safer wording.",
    "Compare the monetary policy responses of the ECB and the Federal Reserve in 2022 and "
    "their effects on inflation expectations.",
    "Écris un court poème sur la mer.",
    "¿Cuál es la diferencia entre ser y estar?",
    "Erkläre mir bitte, wie eine Wärmepumpe funktioniert.",
    "次の文章を要約してください。",
    "Объясни, что такое рекурсия.",
    "lol that's hilarious",
    "Plan a three-day itinerary in Kyoto for a family with two young children, with rainy-day "
    "alternatives and a budget under 600 dollars.",
    "Design a rate limiter for a distributed API gateway: discuss token bucket versus sliding "
    "window, consistency across nodes, and failure modes under network partitions. " * 8,
)


@dataclass(frozen=True)
class ExportReport:
    """What the build measured; written beside the cached encoder and into the spec notes."""

    source: str
    dim: int
    token_cap: int
    inputs: tuple[str, ...]
    export_min_cosine: float
    int8_min_cosine: float
    int8_mean_cosine: float
    check_texts: int
    fp32_mb: float
    int8_mb: float


def transformer_embedder(
    model_path: Path, progress: bool = True, work_dir: Path | None = None
) -> TrainingEmbedder:
    """The int8 ONNX encoder of `model_path` (built once, cached) as a training embedder."""
    folder = cached_encoder(Path(model_path), work_dir=work_dir)
    report = ExportReport(**json.loads((folder / "report.json").read_text()))
    spec = EmbedderSpec(
        kind=EmbedderKind.TRANSFORMER,
        source=report.source,
        dim=report.dim,
        token_cap=report.token_cap,
        normalize=True,
        file=ENCODER,
        truncation=Truncation.HEAD_TAIL,
        head_tokens=min(HEAD_TOKENS, report.token_cap // 2),
        notes=(
            f"recipe v{RECIPE_VERSION}: ONNX opset {OPSET}, dynamic int8 per-channel weights; "
            f"mean pooling, one text per encoder run; vs fp32 sentence-transformers on "
            f"{report.check_texts} check texts: min cosine {report.int8_min_cosine:.4f}, mean "
            f"{report.int8_mean_cosine:.4f}"
        ),
    )
    files = {ENCODER: folder / ENCODER, TOKENIZER: folder / TOKENIZER}
    model = OnnxEncoder(folder, spec)
    counter = ServingTokenCounter(model.runtime)
    return TrainingEmbedder(spec=spec, model=model, files=files, token_counter=counter)


@dataclass(frozen=True)
class _Ids:
    ids: list[int]


class ServingTokenCounter:
    """`TrainingEmbedder.token_counter` over serving's own tokenization, truncation included."""

    def __init__(self, runtime: TransformerEmbedder) -> None:
        self.runtime = runtime

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[_Ids]:
        if add_special_tokens:
            raise EmbedderError("token counts are of content tokens, without [CLS] and [SEP]")
        return [_Ids(self.runtime.token_ids(text)[1:-1]) for text in texts]


class OnnxEncoder:
    """`SentenceTransformer.encode`'s signature over serving's `TransformerEmbedder`.

    Training encodes with the very code and int8 graph that serve, so train/serve parity is
    exact rather than within a tolerance. Texts run in a few threads (ONNX Runtime releases the
    GIL); each run uses serving's single-threaded session, so results do not depend on it.
    """

    def __init__(self, folder: Path, spec: EmbedderSpec) -> None:
        embedder = load_embedder(folder, spec)
        assert isinstance(embedder, TransformerEmbedder)
        self.runtime = embedder
        self.spec = spec

    def encode(
        self,
        texts: list[str],
        batch_size: int = 64,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        if normalize_embeddings != self.spec.normalize:
            raise EmbedderError("the ONNX encoder normalises exactly as its spec says")
        from tqdm.auto import tqdm

        chunks = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        workers = max(1, min(4, os.cpu_count() or 1))
        with (
            ThreadPoolExecutor(workers) as pool,
            tqdm(
                total=len(texts),
                desc="encoding (int8 ONNX)",
                disable=not show_progress_bar,
                unit="text",
            ) as bar,
        ):
            start = 0
            for chunk, (vec, _) in zip(chunks, pool.map(self.runtime.embed, chunks), strict=True):
                out[start : start + len(chunk)] = vec
                start += len(chunk)
                bar.update(len(chunk))
        return out


def cached_encoder(model_path: Path, work_dir: Path | None = None) -> Path:
    """Folder with encoder.onnx (int8), tokenizer.json and report.json; built on first use."""
    import onnxruntime

    fingerprint = model_fingerprint(model_path)
    key = f"transformer-v{RECIPE_VERSION}-{fingerprint}-ort{onnxruntime.__version__}"
    folder = cache_dir() / key
    if all((folder / f).is_file() for f in (ENCODER, TOKENIZER, "report.json")):
        return folder
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build_encoder(model_path, tmp, work_dir=work_dir)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def model_fingerprint(model_path: Path) -> str:
    """Hash of the small config files plus names and sizes of the weight files."""
    if not model_path.is_dir():
        raise EmbedderError(f"{model_path} is not a local sentence-transformers model folder")
    digest = hashlib.sha256()
    for path in sorted(p for p in model_path.rglob("*") if p.is_file()):
        rel = path.relative_to(model_path).as_posix()
        if rel.startswith("."):
            continue
        digest.update(rel.encode())
        size = path.stat().st_size
        digest.update(path.read_bytes() if size < 4_000_000 else str(size).encode())
    return digest.hexdigest()[:16]


def build_encoder(model_path: Path, out: Path, work_dir: Path | None = None) -> ExportReport:
    """Export, quantize and check; writes encoder.onnx, tokenizer.json and report.json to `out`."""
    model = _load_transformer(model_path)
    dim, token_cap = _check_architecture(model)
    inputs = _input_names(model)
    scratch_root = work_dir if work_dir is not None and work_dir.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="rung-export-", dir=scratch_root) as scratch:
        fp32 = Path(scratch) / "encoder-fp32.onnx"
        _export_fp32(model, inputs, fp32)
        _quantize(fp32, out / ENCODER)
        model.tokenizer.backend_tokenizer.save(str(out / TOKENIZER))
        spec = EmbedderSpec(
            kind=EmbedderKind.TRANSFORMER, source="", dim=dim, token_cap=token_cap, file=ENCODER
        )
        reference = np.asarray(
            model.encode(list(CHECK_TEXTS), normalize_embeddings=True, convert_to_numpy=True),
            dtype=np.float32,
        )
        export_cos = _cosines(_encode_with(fp32, out / TOKENIZER, spec), reference)
        int8_cos = _cosines(_encode_with(out / ENCODER, out / TOKENIZER, spec), reference)
        report = ExportReport(
            source=_source_id(model_path),
            dim=dim,
            token_cap=token_cap,
            inputs=inputs,
            export_min_cosine=round(float(export_cos.min()), 6),
            int8_min_cosine=round(float(int8_cos.min()), 6),
            int8_mean_cosine=round(float(int8_cos.mean()), 6),
            check_texts=len(CHECK_TEXTS),
            fp32_mb=round(fp32.stat().st_size / 1e6, 1),
            int8_mb=round((out / ENCODER).stat().st_size / 1e6, 1),
        )
    _check_report(report)
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _check_architecture(model: Any) -> tuple[int, int]:
    """Only Transformer -> mean Pooling -> (Normalize) is reproduced by serving; refuse others."""
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        raise EmbedderError(
            f"unsupported sentence-transformers pipeline {' -> '.join(names)}: the transformer "
            "embedder serves Transformer -> Pooling(mean) [-> Normalize] only"
        )
    mode = _pooling_mode(model[1])
    if mode != "mean":
        raise EmbedderError(f"pooling mode {mode!r} is not supported: serving mean-pools tokens")
    if model.tokenizer.num_special_tokens_to_add(False) != 2:
        raise EmbedderError("the tokenizer must add exactly two special tokens ([CLS] ... [SEP])")
    if not hasattr(model.tokenizer, "backend_tokenizer"):
        raise EmbedderError("the model needs a fast (tokenizers) tokenizer to serve without it")
    dim = int(model[0].auto_model.config.hidden_size)
    token_cap = min(DEFAULT_TRANSFORMER_TOKEN_CAP, int(model.max_seq_length) - 2)
    return dim, token_cap


def _pooling_mode(pooling: Any) -> str:
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):
        return mode
    if hasattr(pooling, "get_pooling_mode_str"):  # sentence-transformers 5.x
        return str(pooling.get_pooling_mode_str())
    return repr(mode)


def _input_names(model: Any) -> tuple[str, ...]:
    wanted = set(model.tokenizer.model_input_names) & set(INPUTS)
    if not {"input_ids", "attention_mask"} <= wanted:
        raise EmbedderError("the tokenizer must produce input_ids and attention_mask")
    return tuple(name for name in INPUTS if name in wanted)


def _export_fp32(model: Any, inputs: tuple[str, ...], path: Path) -> None:
    """TorchScript exporter (dynamo=False): the torch.export-based one needs onnxscript."""
    import torch

    auto = model[0].auto_model.eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.auto = auto

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.auto(**dict(zip(inputs, args, strict=True))).last_hidden_state

    # A padded two-text batch, so the traced graph sees a real attention mask.
    example = model.tokenizer(
        ["a longer example sentence for tracing the encoder", "hi"],
        padding=True,
        return_tensors="pt",
    )
    args = tuple(example[name] for name in inputs)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*inputs, OUTPUT)}
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its own deprecation and tracer caveats (shape checks
        # in transformers' mask code); the export check below is what guards correctness.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(),
            args,
            str(path),
            input_names=list(inputs),
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(fp32: Path, int8: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs a "consider pre-processing" hint on every call
    try:
        quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def _encode_with(graph: Path, tokenizer: Path, spec: EmbedderSpec) -> np.ndarray:
    folder = graph.parent / f"check-{graph.stem}"
    folder.mkdir(exist_ok=True)
    for src, name in ((graph, ENCODER), (tokenizer, TOKENIZER)):
        link = folder / name
        if not link.exists():
            os.symlink(src.resolve(), link)
    return load_embedder(folder, spec).embed(list(CHECK_TEXTS))[0]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _check_report(report: ExportReport) -> None:
    if report.export_min_cosine < MIN_EXPORT_COSINE:
        raise EmbedderError(
            f"ONNX export disagrees with sentence-transformers (min cosine "
            f"{report.export_min_cosine:.4f} < {MIN_EXPORT_COSINE}); not building the embedder"
        )
    low_mean = report.int8_mean_cosine < MIN_INT8_MEAN_COSINE
    if report.int8_min_cosine < MIN_INT8_COSINE or low_mean:
        raise EmbedderError(
            f"int8 encoder strays from fp32 (cosine min {report.int8_min_cosine:.4f}, mean "
            f"{report.int8_mean_cosine:.4f}; need >= {MIN_INT8_COSINE} and "
            f">= {MIN_INT8_MEAN_COSINE}); not building the embedder"
        )
