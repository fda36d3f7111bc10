"""A tiny bundle shared by the closed-loop tests, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.model.ladder import default_ladder
from tests.support.tiny_data import write_jsonl
from train.fit.pipeline import TrainConfig, train_bundle

_BUILT: dict[str, Path] = {}


def tiny_base_bundle(factory: pytest.TempPathFactory) -> Path:
    """A bundle trained on the 36 hand-written tiny requests with no held-out split; callers
    copy it before changing anything."""
    if "base" not in _BUILT:
        root = factory.mktemp("loop")
        data = write_jsonl(root / "tiny.jsonl")
        cfg = TrainConfig(
            data=[str(data)],
            out=root / "bundles" / "base",
            ladder=default_ladder(),
            holdout=False,
            progress=False,
        )
        train_bundle(cfg, log=lambda *_: None)
        _BUILT["base"] = cfg.out
    return _BUILT["base"]
