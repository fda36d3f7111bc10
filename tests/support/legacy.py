"""Bundles as older pipelines wrote them, built from a current bundle's own heads, so tests
can check that old bundles still load and decide exactly as before.

Schema 1 (before per-tier correctness and the utility rule): heads for the non-top tiers only,
one `p_tier [n, K-1]` output, no decision policy or cost model in the manifest. Schema 2
before stacking: see `make_per_head_bundle`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib

from serve.model.bundle import CLASSIFIER, MANIFEST, sha256_file


def make_legacy_bundle(src: Path, dst: Path) -> Path:
    from train.fit.export import OUTPUT, heads_to_onnx

    shutil.copytree(src, dst)
    heads = joblib.load(src / "training" / "heads.joblib")["heads"]
    raw = json.loads((src / MANIFEST).read_text())
    graph = heads_to_onnx(
        heads[:-1], raw["embedder"]["dim"] + len(raw["embedder"]["extra_features"])
    )
    (dst / CLASSIFIER).write_bytes(graph.SerializeToString())
    raw["schema_version"] = 1
    raw.pop("decision", None)
    raw.pop("cost_model", None)
    raw["classifier"] = {
        "file": CLASSIFIER,
        "input": "features",
        "output": OUTPUT,
        "algorithm": "per-tier StandardScaler + LogisticRegression (schema 1)",
    }
    raw["files"][CLASSIFIER] = sha256_file(dst / CLASSIFIER)
    (dst / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
    return dst


def make_per_head_bundle(src: Path, dst: Path) -> Path:
    """A schema-2 bundle as written before the heads were stacked: one skl2onnx sub-graph per
    head, constant heads as nodes, and the lengths output present (and named in the manifest)
    even when no tier learned its answer length. Built from `src`'s own heads and lengths."""
    from train.fit.export import LENGTHS, correctness_to_onnx

    shutil.copytree(src, dst)
    saved = joblib.load(src / "training" / "heads.joblib")
    raw = json.loads((src / MANIFEST).read_text())
    n_features = raw["embedder"]["dim"] + len(raw["embedder"]["extra_features"])
    graph = correctness_to_onnx(saved["heads"], saved["lengths"], n_features, stacked=False)
    (dst / CLASSIFIER).write_bytes(graph.SerializeToString())
    for key in ("constant_heads", "graph_nodes"):
        raw["classifier"].pop(key, None)
    raw["classifier"]["lengths_output"] = LENGTHS
    raw["files"][CLASSIFIER] = sha256_file(dst / CLASSIFIER)
    (dst / MANIFEST).write_text(json.dumps(raw, indent=2) + "\n")
    return dst
