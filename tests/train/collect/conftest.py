from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
pytest.importorskip("litellm")

from tests.support.fake_llm import fake_llm_server  # noqa: E402
from tests.train.collect.helpers import KEY_ENV  # noqa: E402


@pytest.fixture
def llm(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "test-key")
    with fake_llm_server() as server:
        yield server
