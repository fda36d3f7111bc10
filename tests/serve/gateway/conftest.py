"""Real rung servers on loopback for the gateway tests (one per module), and a silent port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.api.app import create_app
from serve.api.settings import Settings
from tests.support.servers import live_server

# LiteLLM fetches its model price map at import unless told to use the bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def rung_url(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    settings = Settings(model=tiny_bundles["a"], poll_seconds=0, api_key=None, log_requests=False)
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def locked_rung_url(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    settings = Settings(model=tiny_bundles["a"], poll_seconds=0, api_key="k3y", log_requests=False)
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (kernel backlog) and never answers: rung too slow."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
