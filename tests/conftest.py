"""Shared fixtures: tiny bundles trained once per session and fresh models folders."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_data import write_jsonl


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundle `a`, trained on the hand-written tiny set, and `b`: the same files under another
    name, version and threshold (one training run; reloads can tell them apart)."""
    from dataclasses import replace

    from serve.model.bundle import read_manifest, write_manifest
    from serve.model.ladder import default_ladder
    from train.fit.pipeline import TrainConfig, train_bundle

    root = tmp_path_factory.mktemp("bundles")
    data = write_jsonl(root / "tiny.jsonl")
    cfg = TrainConfig(data=[str(data)], out=root / "a", ladder=default_ladder(), progress=False)
    train_bundle(cfg, log=lambda *_: None)
    shutil.copytree(root / "a", root / "b")
    m = read_manifest(root / "a")
    write_manifest(
        root / "b",
        replace(
            m, name="b", version=m.version.replace("a@", "b@"), threshold=round(m.threshold / 2, 6)
        ),
    )
    return {"a": root / "a", "b": root / "b"}


@pytest.fixture(scope="session")
def legacy_bundle(tiny_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundle `a` rewritten in the schema-1 layout: a threshold bundle as built before."""
    from tests.support.legacy import make_legacy_bundle

    return make_legacy_bundle(tiny_bundles["a"], tmp_path_factory.mktemp("legacy") / "old")


@pytest.fixture(scope="session")
def per_head_bundle(
    tiny_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Bundle `a` with the schema-2 graph layout from before the heads were stacked."""
    from tests.support.legacy import make_per_head_bundle

    return make_per_head_bundle(tiny_bundles["a"], tmp_path_factory.mktemp("per_head") / "old")


@pytest.fixture(scope="session")
def routerbench_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The default recipe trained on RouterBench with the hash split held out (once per
    session; skipped when ../shared/data is absent): (bundle folder, TrainResult)."""
    from serve.model.ladder import default_ladder
    from tests.support.paths import SHARED
    from train.fit.pipeline import TrainConfig, train_bundle

    if not (SHARED / "routerbench").is_dir():
        pytest.skip("../shared/data absent")
    out = tmp_path_factory.mktemp("routerbench") / "rb"
    cfg = TrainConfig(
        data=[str(SHARED / "routerbench")], out=out, ladder=default_ladder(), progress=False
    )
    return out, train_bundle(cfg, log=lambda *_: None)


@pytest.fixture
def models_dir(tiny_bundles: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh models folder holding (hard-linked) copies of the tiny bundles, current -> a."""
    from serve.model.registry import set_current

    root = tmp_path / "models"
    for name, src in tiny_bundles.items():
        shutil.copytree(src, root / name, copy_function=os.link)
    set_current(root, "a")
    return root


@pytest.fixture(autouse=True)
def _close_stray_event_loop():
    """LiteLLM's sync `completion()` leaves an event loop set on the main thread and never closes
    it; the next `asyncio.run()` drops it unclosed, a ResourceWarning that warnings-as-errors
    turns into a failed session. Close what a test left behind."""
    yield
    loop = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    if loop is not None and not loop.is_running() and not loop.is_closed():
        loop.close()
        asyncio.set_event_loop(None)
