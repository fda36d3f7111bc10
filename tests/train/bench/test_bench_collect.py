"""`rung bench collect` runs end to end on a small load and reports both sides."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
pytest.importorskip("litellm")

from train.cli import main  # noqa: E402


def test_bench_collect_reports_throughput_and_overhead(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    out = tmp_path / "bench.json"
    args = ["bench", "collect", "--calls", "40", "--concurrency", "8", "--rounds", "1"]
    assert main([*args, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["calls"] == 40 and res["concurrency"] == 8
    for side in ("bare", "collect"):
        assert res[side]["calls_per_s"] > 0 and res[side]["latency_ms_p50"] > 0
    out = capsys.readouterr().out
    assert "rung's own overhead per call" in out and res["own_ms_per_call"]["cpu"] > 0


def test_bench_collect_refuses_tiny_loads(capsys):
    assert main(["bench", "collect", "--calls", "1"]) == 2
    assert "--calls and --concurrency must be >= 2" in capsys.readouterr().err
