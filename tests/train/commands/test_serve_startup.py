"""A real `rung serve` whose model is broken: fall back along the pointer's history, or exit 1
with one line and no traceback."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from serve.model.registry import set_current
from tests.support.bundles import broken_copy
from tests.support.servers import free_port

# as the console script does (`-m train.cli` would make a second copy of the module)
RUNG = [sys.executable, "-c", "import sys; from train.cli import main; sys.exit(main())"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNG_")}


def _readyz(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            body = json.loads(conn.getresponse().read())
            conn.close()
            return body
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server never answered; log:\n{log.read_text()}")


def test_serve_with_a_bad_pointer_falls_back_and_says_so(models_dir, tmp_path):
    broken_copy(models_dir / "a", models_dir / "bad", "tampered")
    set_current(models_dir, "bad", check=False)
    port = free_port()
    log = tmp_path / "server.log"
    cmd = [*RUNG, "serve", "--models-dir", str(models_dir), "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            body = _readyz(port, proc, log)
        finally:
            proc.terminate()
            proc.wait(15)
    assert body["ready"] and body["model"]["name"] == "a"
    assert body["fallback"]["names"] == "bad" and body["fallback"]["serving"] == "a"
    text = log.read_text()
    assert "names bad, which fails its checks" in text and "serving a" in text
    assert "Traceback" not in text


def _fails_in_one_line(cmd: list[str]) -> str:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


def test_serve_with_no_good_bundle_in_the_history_exits_1_in_one_line(tmp_path, tiny_bundles):
    models = tmp_path / "models"
    broken_copy(tiny_bundles["a"], models / "bad", "unloadable")
    set_current(models, "bad", check=False)
    cmd = [*RUNG, "serve", "--models-dir", str(models), "--port", str(free_port())]
    line = _fails_in_one_line(cmd)
    assert line.startswith("rung serve: error: cannot serve") and "cannot load ONNX" in line


def test_serve_model_with_a_bad_bundle_exits_1_in_one_line(tmp_path, tiny_bundles):
    bad = broken_copy(tiny_bundles["a"], tmp_path / "bad", "tampered")
    cmd = [*RUNG, "serve", "--model", str(bad), "--port", str(free_port())]
    assert "does not match its sha256" in _fails_in_one_line(cmd)


def test_serve_check_reports_the_fallback(models_dir, capsys, monkeypatch):
    monkeypatch.setattr(os, "environ", _env())  # `rung serve` exports RUNG_* for its workers
    from train.cli import main

    broken_copy(models_dir / "a", models_dir / "bad", "nan")
    set_current(models_dir, "bad", check=False)
    assert main(["serve", "--models-dir", str(models_dir), "--check"]) == 0
    out = capsys.readouterr().out
    assert "fallback:" in out and "names bad, which fails its checks" in out and "ok: a@" in out


def test_plain_uvicorn_with_no_servable_bundle_fails_without_a_traceback(tmp_path, tiny_bundles):
    bad = broken_copy(tiny_bundles["a"], tmp_path / "bad", "tampered")
    env = {**_env(), "RUNG_MODEL": str(bad)}
    cmd = [sys.executable, "-m", "uvicorn", "serve.app:create_app", "--factory"]
    done = subprocess.run(
        [*cmd, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "rung: cannot serve" in done.stderr and "does not match its sha256" in done.stderr
