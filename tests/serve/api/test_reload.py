"""Model changes without downtime: pointer moves, SIGHUP, refusals, requests during reloads."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.api.app import create_app
from serve.api.settings import Settings
from serve.api.state import ModelHolder
from serve.model.bundle import CLASSIFIER, read_manifest, sha256_file, write_manifest
from serve.model.errors import RungError
from serve.model.ladder import Ladder, Tier
from serve.model.registry import set_current
from tests.support.servers import free_port, live_server

AUTH = {"Authorization": "Bearer tok"}


def version(models: Path, name: str) -> str:
    return read_manifest(models / name).version


def broken_copy(models: Path, name: str, how: str) -> str:
    """A copy of bundle `a` that must be refused, in one of three ways."""
    dst = models / name
    shutil.copytree(models / "a", dst)
    m = read_manifest(dst)
    if how == "tampered":  # bytes differ from the manifest's sha256
        (dst / CLASSIFIER).write_bytes(b"\x00" * 64)
    elif how == "unloadable":  # hashes match, but the graph is garbage
        (dst / CLASSIFIER).write_bytes(b"not an onnx graph")
        m = replace(m, files={**m.files, CLASSIFIER: sha256_file(dst / CLASSIFIER)})
    elif how == "other ladder":  # loads and answers, but gateways know other tier names
        tiers = tuple(Tier(n) for n in ("tiny", "mid", "huge"))
        m = replace(m, ladder=Ladder(tiers))
    write_manifest(dst, replace(m, name=name, version=f"{name}@1"))
    return name


def test_a_moved_pointer_is_swapped_in_and_in_flight_work_keeps_the_old(models_dir):
    holder = ModelHolder(Settings(models_dir=models_dir, poll_seconds=0))
    old = holder.load_first()
    assert old.ref["version"] == version(models_dir, "a")
    assert holder.poll() is None  # nothing moved
    set_current(models_dir, "b")
    attempt = holder.poll()
    assert attempt is not None and attempt.ok
    assert holder.current is not None and holder.current.ref["version"] == version(models_dir, "b")
    # a request that took `old` before the swap finishes on it, unchanged
    assert old.ref["version"] == version(models_dir, "a")
    assert len(old.router.p_sufficient_one("still answering")) == 3


def test_a_bundle_replaced_in_place_is_noticed(tiny_bundles, tmp_path):
    path = tmp_path / "m"
    shutil.copytree(tiny_bundles["a"], path)
    holder = ModelHolder(Settings(model=path, poll_seconds=0))
    holder.load_first()
    fresh = tmp_path / "m.new"
    shutil.copytree(tiny_bundles["b"], fresh)
    os.replace(path, tmp_path / "m.old")
    os.replace(fresh, path)
    attempt = holder.poll()
    assert attempt is not None and attempt.ok and attempt.version.startswith("b@")


@pytest.mark.parametrize("how", ["tampered", "unloadable", "other ladder"])
def test_a_broken_bundle_is_refused_and_the_old_one_keeps_serving(models_dir, how, caplog):
    bad = broken_copy(models_dir, "bad", how)
    settings = Settings(models_dir=models_dir, poll_seconds=0, admin_token="tok")
    with TestClient(create_app(settings)) as client:
        set_current(models_dir, bad, check=False)  # as `ln -sfn` would: no promotion checks
        r = client.post("/admin/reload", headers=AUTH)
        assert r.status_code == 409
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["model"]["version"] == version(models_dir, "a")
        refusal = body["last_refusal"]
        assert refusal["ok"] is False and refusal["target"].endswith("/bad") and refusal["error"]
        answer = client.post("/classify", json={"text": "hello"})
        assert answer.status_code == 200
        assert answer.json()["model"]["version"] == version(models_dir, "a")
        holder = client.app.state.ctx.holder
        assert not holder.changed()  # the refused target is not retried on every poll
        set_current(models_dir, "b")
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
        assert client.get("/readyz").json()["model"]["version"] == version(models_dir, "b")
        assert 'rung_reloads_total{result="refused"} 1.0' in client.get("/metrics").text
    assert any("refused model" in r.getMessage() for r in caplog.records)


def test_a_pointer_to_nothing_is_refused(models_dir):
    holder = ModelHolder(Settings(models_dir=models_dir, poll_seconds=0))
    holder.load_first()
    (models_dir / "empty").mkdir()
    tmp = models_dir / ".tmp-link"
    os.symlink("empty", tmp)
    os.replace(tmp, models_dir / "current")
    attempt = holder.poll()
    assert attempt is not None and not attempt.ok and "does not lead to a bundle" in attempt.error
    assert holder.current is not None and holder.poll() is None


def test_startup_without_a_servable_bundle_fails_with_one_clear_error(tmp_path):
    with pytest.raises(RungError, match="cannot serve"):
        ModelHolder(Settings(model=tmp_path / "missing")).load_first()


def _hammer(url: str, stop: threading.Event, seen: dict[str, int], failures: list[str]) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps({"text": "Summarise this contract clause for me."})
    while not stop.is_set():
        try:
            conn.request("POST", "/classify", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                failures.append(f"{resp.status}: {data[:200]!r}")
                continue
            v = json.loads(data)["model"]["version"]
            seen[v] = seen.get(v, 0) + 1
        except Exception as exc:  # any failure is what this test exists to catch
            failures.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.close()


def _wait_for(url: str, check: Any, timeout: float = 20.0) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/readyz")
        body = json.loads(conn.getresponse().read())
        conn.close()
        if check(body):
            return body
        time.sleep(0.02)
    raise AssertionError(f"readyz never satisfied the check; last: {body}")


def test_reloads_under_concurrent_requests_fail_no_request(models_dir):
    bad = broken_copy(models_dir, "bad", "unloadable")
    va, vb = version(models_dir, "a"), version(models_dir, "b")
    app = create_app(Settings(models_dir=models_dir, poll_seconds=0.02))
    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = threading.Event()
    with live_server(app) as url:
        threads = [
            threading.Thread(target=_hammer, args=(url, stop, seen, failures)) for _ in range(4)
        ]
        for t in threads:
            t.start()
        try:
            for name, want in (("b", vb), ("a", va), (bad, None), ("b", vb), ("a", va)):
                set_current(models_dir, name, check=False)
                if want is None:
                    body = _wait_for(
                        url, lambda b: (b["last_refusal"] or {}).get("target", "").endswith("/bad")
                    )
                    assert body["model"]["version"] == va  # still serving the old one
                else:
                    _wait_for(url, lambda b, want=want: b["model"]["version"] == want)
                time.sleep(0.15)  # let requests land on this version
        finally:
            stop.set()
            for t in threads:
                t.join(10)
    assert failures == []
    assert seen.get(va, 0) > 10 and seen.get(vb, 0) > 10


def test_sighup_reloads_a_running_server(models_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "RUNG_MODELS_DIR": str(models_dir), "RUNG_POLL_SECONDS": "0"}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "serve.app:create_app",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _wait_for(url, lambda b: b["ready"], timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "server.log"
                ).read_text()
                time.sleep(0.05)
        set_current(models_dir, "b")
        time.sleep(0.1)
        assert _wait_for(url, lambda b: True)["model"]["version"] == version(models_dir, "a")
        proc.send_signal(signal.SIGHUP)
        body = _wait_for(url, lambda b: b["model"]["version"] == version(models_dir, "b"))
        assert body["last_reload"]["reason"] == "SIGHUP"
        assert proc.poll() is None  # reloaded in place, not restarted
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
