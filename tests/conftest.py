"""Shared fixtures: tiny bundles trained once per session, fresh models folders, live servers."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tiny_data import write_jsonl


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bundle `a`, trained on the hand-written tiny set, and `b`: the same files under another
    name, version and threshold (one training run; reloads can tell them apart)."""
    from dataclasses import replace

    from serve.bundle import read_manifest, write_manifest
    from serve.ladder import default_ladder
    from train.pipeline import TrainConfig, train_bundle

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


@pytest.fixture
def models_dir(tiny_bundles: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh models folder holding (hard-linked) copies of the tiny bundles, current -> a."""
    from serve.registry import set_current

    root = tmp_path / "models"
    for name, src in tiny_bundles.items():
        shutil.copytree(src, root / name, copy_function=os.link)
    set_current(root, "a")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: object) -> Iterator[str]:
    """Run `app` on a real uvicorn server in a background thread; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
