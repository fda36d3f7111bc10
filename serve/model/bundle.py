"""The on-disk model bundle: a folder with a JSON manifest and the files serving needs.

Nothing here unpickles: ONNX graphs, a `.npy` loaded with `allow_pickle=False`, a tokenizer
JSON and the manifest. Bundles are written to a temporary sibling folder and renamed into
place, so a reader never sees half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from serve.model.errors import RungError
from serve.model.ladder import Ladder

SCHEMA_VERSION = 2  # 2: per-tier correctness heads, a decision policy and a cost model
READABLE_SCHEMAS = (1, 2)  # 1: threshold bundles, still loaded and decided exactly as before
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
CLASSIFIER = "classifier.onnx"
STATIC_EMBEDDINGS = "embeddings.npy"
ENCODER = "encoder.onnx"
TRAINING_DIR = "training"  # training-side extras (joblib pipeline, row hashes); never served


class BundleError(RungError):
    """A bundle that cannot be served: missing files, wrong schema, a failed integrity check."""


class EmbedderKind(str, Enum):
    STATIC = "static"  # token-embedding table, mean pooled: tens of microseconds
    TRANSFORMER = "transformer"  # ONNX transformer encoder: milliseconds


class Truncation(str, Enum):
    """Which content tokens a text longer than `token_cap` keeps."""

    HEAD = "head"  # the first token_cap: what manifests without the field mean
    # The first head_tokens and the last (token_cap - head_tokens): prompts often put pasted
    # context or few-shot examples first and the actual question last.
    HEAD_TAIL = "head_tail"


@dataclass(frozen=True)
class EmbedderSpec:
    kind: EmbedderKind
    source: str  # what it was built from, e.g. sentence-transformers/all-MiniLM-L6-v2
    dim: int
    token_cap: int  # content tokens kept; longer text is truncated, never rejected
    normalize: bool = True
    file: str = STATIC_EMBEDDINGS
    extra_features: tuple[str, ...] = ("log_tokens",)
    notes: str = ""
    truncation: Truncation = Truncation.HEAD
    head_tokens: int = 0  # with HEAD_TAIL: content tokens kept from the start

    def __post_init__(self) -> None:
        if self.truncation is Truncation.HEAD and self.head_tokens != 0:
            raise BundleError("embedder head_tokens is only meaningful with head_tail truncation")
        if self.truncation is Truncation.HEAD_TAIL:
            if self.kind is not EmbedderKind.TRANSFORMER:
                raise BundleError("head_tail truncation is implemented for the transformer only")
            if not 0 < self.head_tokens < self.token_cap:
                raise BundleError(
                    f"head_tail truncation needs 0 < head_tokens < token_cap, got "
                    f"{self.head_tokens} and {self.token_cap}"
                )

    @property
    def n_features(self) -> int:
        return self.dim + len(self.extra_features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "source": self.source,
            "dim": self.dim,
            "token_cap": self.token_cap,
            "normalize": self.normalize,
            "file": self.file,
            "extra_features": list(self.extra_features),
            "notes": self.notes,
            "truncation": self.truncation.value,
            "head_tokens": self.head_tokens,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EmbedderSpec:
        return cls(
            kind=EmbedderKind(raw["kind"]),
            source=str(raw["source"]),
            dim=int(raw["dim"]),
            token_cap=int(raw["token_cap"]),
            normalize=bool(raw.get("normalize", True)),
            file=str(raw["file"]),
            extra_features=tuple(raw.get("extra_features", ())),
            notes=str(raw.get("notes", "")),
            truncation=Truncation(raw.get("truncation", Truncation.HEAD.value)),
            head_tokens=int(raw.get("head_tokens", 0)),
        )


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to know about a bundle, and why its threshold is what it is."""

    name: str
    version: str
    created_at: str
    ladder: Ladder
    embedder: EmbedderSpec
    threshold: float
    threshold_target: dict[str, Any]
    classifier: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    versions: dict[str, str]
    files: dict[str, str]  # relative path -> sha256
    lineage: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    # Schema 2. `decision`: serve.model.policy.Policy.to_dict() plus the figures behind it;
    # `cost_model`: which tiers' answer lengths are learned and how input tokens are counted.
    # Empty for schema 1: the threshold rule, costs from the ladder's output_tokens.
    decision: dict[str, Any] = field(default_factory=dict)
    cost_model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "ladder": self.ladder.to_dict(),
            "embedder": self.embedder.to_dict(),
            "threshold": {"value": self.threshold, "target": self.threshold_target},
            "classifier": self.classifier,
            "data": self.data,
            "metrics": self.metrics,
            "versions": self.versions,
            "files": self.files,
            "lineage": self.lineage,
            **({"decision": self.decision} if self.decision else {}),
            **({"cost_model": self.cost_model} if self.cost_model else {}),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        schema = raw.get("schema_version")
        if schema not in READABLE_SCHEMAS:
            raise BundleError(
                f"manifest schema_version {schema!r} is not supported (this server reads "
                f"{', '.join(map(str, READABLE_SCHEMAS))})"
            )
        try:
            threshold = float(raw["threshold"]["value"])
            if not 0.0 <= threshold <= 1.0:
                raise BundleError(f"threshold {threshold} outside [0, 1]")
            return cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                created_at=str(raw["created_at"]),
                ladder=Ladder.from_dict(raw["ladder"]),
                embedder=EmbedderSpec.from_dict(raw["embedder"]),
                threshold=threshold,
                threshold_target=dict(raw["threshold"].get("target", {})),
                classifier=dict(raw["classifier"]),
                data=dict(raw.get("data", {})),
                metrics=dict(raw.get("metrics", {})),
                versions=dict(raw.get("versions", {})),
                files=dict(raw.get("files", {})),
                lineage=dict(raw.get("lineage", {})),
                schema_version=int(schema),
                decision=dict(raw.get("decision", {})) if schema >= 2 else {},
                cost_model=dict(raw.get("cost_model", {})) if schema >= 2 else {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"manifest is incomplete or malformed: {exc!r}") from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle: str | Path) -> Manifest:
    path = Path(bundle) / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"no {MANIFEST} in {bundle}: not a rung bundle") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: the manifest must be a JSON object")
    return Manifest.from_dict(raw)


def served_files(manifest: Manifest) -> tuple[str, ...]:
    """The files a server reads besides the manifest: each must carry a sha256."""
    classifier = str(manifest.classifier.get("file", CLASSIFIER))
    return tuple(dict.fromkeys((TOKENIZER, manifest.embedder.file, classifier)))


def verify_files(bundle: str | Path, manifest: Manifest) -> None:
    """Refuse a bundle whose files are missing or differ from what the manifest recorded,
    or that serves a file the manifest gives no sha256 for."""
    root = Path(bundle)
    unlisted = [rel for rel in served_files(manifest) if rel not in manifest.files]
    if unlisted:
        raise BundleError(
            f"bundle {root}: the manifest has no sha256 for {', '.join(unlisted)}, which "
            "serving reads"
        )
    for rel, expected in manifest.files.items():
        path = root / rel
        if not path.is_file():
            raise BundleError(f"bundle {root} is missing {rel}")
        if sha256_file(path) != expected:
            raise BundleError(f"bundle {root}: {rel} does not match its sha256 in the manifest")


def write_manifest(bundle: str | Path, manifest: Manifest) -> None:
    path = Path(bundle) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", "utf-8")


@contextmanager
def atomic_bundle_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `out`; on success rename it to `out` in one step."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; choose another name or pass --overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a server may run as another user
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
