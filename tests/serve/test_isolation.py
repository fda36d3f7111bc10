"""The server process loads ONNX Runtime, tokenizers and numpy only, and never unpickles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("torch", "sentence_transformers", "sklearn", "joblib", "transformers", "skl2onnx")

GUARD = """
import pickle, sys
import numpy as np

def refuse(*args, **kwargs):
    raise AssertionError("unpickling attempted")

class Refuse:
    def __init__(self, *args, **kwargs):
        refuse()

pickle.load = pickle.loads = refuse
pickle.Unpickler = Refuse
np_load = np.load
np_calls = []

def guarded_load(*args, **kwargs):
    np_calls.append(kwargs.get("allow_pickle", False))
    return np_load(*args, **kwargs)

np.load = guarded_load
"""

CHECK = """
import json
found = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({"found": found, "np_allow_pickle": np_calls}))
"""


def run_guarded(body: str, *args: str) -> dict:
    code = "\n".join([GUARD, f"FORBIDDEN = {FORBIDDEN!r}", body, CHECK])
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_app_classifies_without_torch_sklearn_or_pickle(tiny_bundles):
    body = """
from fastapi.testclient import TestClient
from serve.api.app import create_app
from serve.api.settings import Settings
with TestClient(create_app(Settings(model=sys.argv[1], poll_seconds=0))) as c:
    assert c.post("/classify", json={"text": "hello there"}).status_code == 200
    assert c.post("/classify/batch", json={"items": [{"text": "a"}, {"text": "b"}]}
                  ).status_code == 200
"""
    result = run_guarded(body, str(tiny_bundles["a"]))
    assert result["found"] == []
    assert result["np_allow_pickle"] == [False]  # the static table, loaded without pickle


def test_rung_serve_check_stays_on_the_serving_side(tiny_bundles):
    body = """
from train.cli import main
assert main(["serve", "--model", sys.argv[1], "--check"]) == 0
"""
    result = run_guarded(body, str(Path(tiny_bundles["a"])))
    assert result["found"] == []
