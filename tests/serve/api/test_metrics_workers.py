"""/metrics counts every worker: prometheus-client's multiprocess mode, per-run directory."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import free_port

RUNG = [sys.executable, "-c", "import sys; from train.cli import main; sys.exit(main())"]
WORKER = """
import sys
from serve.api.metrics import Metrics
m = Metrics()
assert m.multiprocess
m.set_model("a", "a@1")
for _ in range(int(sys.argv[1])):
    m.observe("/classify", 200, 0.0001)
    m.decided("small")
"""
RENDER = "from serve.api.metrics import Metrics; print(Metrics().render().decode())"


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in:\n{text}"
    return float(match.group(1))


def test_values_written_by_separate_processes_are_merged(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", WORKER, str(n)], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", RENDER], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    assert _value(out, 'rung_requests_total{route="/classify",status="200"}') == 7
    assert _value(out, 'rung_decisions_total{tier="small"}') == 7
    assert _value(out, 'rung_request_duration_seconds_count{route="/classify"}') == 7


def _get(port: int, path: str, body: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # new connection each time
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _pids(metrics: str) -> set[str]:
    return set(re.findall(r'^rung_model_info\{[^}]*pid="(\d+)"[^}]*\} 1\.0$', metrics, re.M))


def test_two_real_workers_are_counted_on_every_scrape(tiny_bundles, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNG_", "PROMETHEUS_"))}
    env["RUNG_LOG_REQUESTS"] = "false"
    cmd = [*RUNG, "serve", "--model", str(tiny_bundles["a"]), "--port", str(port), "--workers", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            metrics = _wait_for_two_workers(port, proc, log)
            assert 'route="/classify"' not in metrics  # nothing classified yet
            n = 40
            for i in range(n):
                status, _ = _get(port, "/classify", {"text": f"request number {i}"})
                assert status == 200
            for _ in range(8):  # each scrape lands on either worker; each must see all n
                status, metrics = _get(port, "/metrics")
                assert status == 200
                assert _value(metrics, 'rung_requests_total{route="/classify",status="200"}') == n
                assert len(_pids(metrics)) == 2
        finally:
            proc.terminate()
            proc.wait(30)
    assert "Traceback" not in log.read_text()


def _wait_for_two_workers(port: int, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            status, metrics = _get(port, "/metrics")
            if status == 200 and len(_pids(metrics)) == 2:
                return metrics
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"two workers never reported; log:\n{log.read_text()}")
