"""A schema-1 bundle (before per-tier correctness and the utility rule), as the old pipeline
wrote it: heads for the non-top tiers only, one `p_tier [n, K-1]` output, no decision policy
or cost model in the manifest. Built from a current bundle's own heads, so tests can check
that old bundles still load and decide exactly as before."""

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
