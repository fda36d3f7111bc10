"""Start-up with a pointer to a bad bundle: serve the newest good one in its history, say so."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serve.api.app import create_app
from serve.api.settings import Settings
from serve.api.state import ModelHolder
from serve.model.bundle import read_manifest
from serve.model.errors import RungError
from serve.model.registry import set_current
from tests.support.bundles import broken_copy


def test_a_bad_pointer_at_startup_serves_the_newest_good_bundle_and_says_so(models_dir, caplog):
    set_current(models_dir, "b")  # history: a, b
    broken_copy(models_dir / "a", models_dir / "bad", "tampered")
    set_current(models_dir, "bad", check=False)  # the pointer names a bad bundle
    with TestClient(create_app(Settings(models_dir=models_dir, poll_seconds=0))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["model"]["version"] == read_manifest(models_dir / "b").version  # newest good
        fb = body["fallback"]
        assert fb["names"] == "bad" and fb["serving"] == "b" and "sha256" in fb["error"]
        assert body["last_refusal"]["target"].endswith("/bad")
        assert client.post("/classify", json={"text": "hello"}).status_code == 200
        assert "rung_model_fallback 1.0" in client.get("/metrics").text
        # once the pointer moves to a good bundle, it is served and the fallback is over
        set_current(models_dir, "a")
        assert client.app.state.ctx.holder.poll().ok
        body = client.get("/readyz").json()
        assert body["fallback"] is None and body["model"]["name"] == "a"
        assert "rung_model_fallback 0.0" in client.get("/metrics").text
    logged = [r.getMessage() for r in caplog.records if r.name == "rung.serve"]
    assert any("names bad, which fails its checks" in m and "serving b" in m for m in logged)


def test_the_fallback_skips_history_entries_that_fail_too(models_dir):
    broken_copy(models_dir / "a", models_dir / "worse", "unloadable")
    broken_copy(models_dir / "a", models_dir / "bad", "nan")
    set_current(models_dir, "worse", check=False)
    set_current(models_dir, "bad", check=False)
    holder = ModelHolder(Settings(models_dir=models_dir, poll_seconds=0))
    served = holder.load_first()
    assert served.ref["name"] == "a" and holder.fallback is not None
    assert holder.poll() is None  # the refused pointer is not retried on every poll


def test_no_good_bundle_in_the_history_is_one_clear_error(tmp_path, tiny_bundles):
    models = tmp_path / "models"
    broken_copy(tiny_bundles["a"], models / "bad", "tampered")
    set_current(models, "bad", check=False)
    with pytest.raises(RungError, match="no earlier bundle in its history passes either"):
        ModelHolder(Settings(models_dir=models, poll_seconds=0)).load_first()


def test_a_bad_bundle_named_directly_has_no_fallback(tmp_path, tiny_bundles):
    bad = broken_copy(tiny_bundles["a"], tmp_path / "bad", "tampered")
    with pytest.raises(RungError, match="cannot serve .*sha256"):
        ModelHolder(Settings(model=bad, poll_seconds=0)).load_first()
