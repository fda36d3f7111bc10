"""Real broken bundles for tests: a copy of a good bundle, damaged in one named way."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from serve.model.bundle import CLASSIFIER, TOKENIZER, read_manifest, sha256_file, write_manifest

# how -> what the refusal message says
DAMAGE = {
    "tampered": "does not match its sha256",  # bytes differ from the manifest's sha256
    "unloadable": "cannot load ONNX graph",  # hashes match, the graph is garbage
    "missing": "is missing",  # a served file is gone
    "unlisted": "has no sha256",  # a served file the manifest does not vouch for
    "nan": "non-finite",  # loads, but the smoke query answers NaN
}


def broken_copy(good: Path, dst: Path, how: str) -> Path:
    """Copy bundle `good` to `dst` and damage it as `how` (a key of DAMAGE) says."""
    shutil.copytree(good, dst)
    m = read_manifest(dst)
    files = dict(m.files)
    if how == "tampered":
        (dst / CLASSIFIER).write_bytes(b"\x00" * 64)
    elif how == "unloadable":
        (dst / CLASSIFIER).write_bytes(b"not an onnx graph")
        files[CLASSIFIER] = sha256_file(dst / CLASSIFIER)
    elif how == "missing":
        (dst / TOKENIZER).unlink()
    elif how == "unlisted":
        del files[TOKENIZER]
    elif how == "nan":
        import numpy as np

        path = dst / m.embedder.file
        table = np.load(path, allow_pickle=False)
        table[:] = np.nan
        path.unlink()  # a hard-linked copy must not change the original
        np.save(path, table, allow_pickle=False)
        files[m.embedder.file] = sha256_file(path)
    else:
        raise ValueError(f"unknown damage {how!r}")
    write_manifest(dst, replace(m, name=dst.name, version=f"{dst.name}@1", files=files))
    return dst
