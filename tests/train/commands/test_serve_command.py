"""`rung serve` and `rung bench` argument handling, without blocking on a server."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any

import pytest

from serve.model.bundle import read_manifest
from serve.model.registry import set_current
from train.cli import main


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private copy of the environment: `rung serve` writes RUNG_* for its workers."""
    private = {k: v for k, v in os.environ.items() if not k.startswith("RUNG_")}
    monkeypatch.setattr(os, "environ", private)
    return private


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    return calls


def test_serve_passes_flags_to_uvicorn_and_settings_to_workers(tiny_bundles, env, uvicorn_calls):
    assert (
        main(
            [
                "serve",
                "--model",
                str(tiny_bundles["a"]),
                "--port",
                "8123",
                "--workers",
                "2",
                "--host",
                "0.0.0.0",
            ]
        )
        == 0
    )
    ((app, kw),) = uvicorn_calls
    assert app == "serve.app:create_app"
    assert kw | {"log_level": None} == {
        "host": "0.0.0.0",
        "port": 8123,
        "workers": 2,
        "factory": True,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_level": None,
    }
    assert env["RUNG_MODEL"] == str(tiny_bundles["a"].absolute())
    assert "RUNG_MODELS_DIR" not in env


def test_serve_follows_models_dir_and_the_flag_beats_the_environment(
    models_dir, env, uvicorn_calls, tmp_path
):
    env["RUNG_MODEL"] = str(tmp_path / "elsewhere")
    assert main(["serve", "--models-dir", str(models_dir)]) == 0
    assert env["RUNG_MODELS_DIR"] == str(models_dir.absolute())
    assert "RUNG_MODEL" not in env
    assert uvicorn_calls[0][1]["port"] == 8000 and uvicorn_calls[0][1]["host"] == "127.0.0.1"


def test_serve_defaults_to_models_current_then_models_default(
    models_dir, env, uvicorn_calls, monkeypatch, capsys
):
    monkeypatch.chdir(models_dir.parent)
    assert main(["serve"]) == 0
    assert env["RUNG_MODEL"] == str((models_dir / "current").absolute())  # follows the pointer
    (models_dir / "current").unlink()
    del env["RUNG_MODEL"]  # what the first call exported for its workers
    assert main(["serve"]) == 2
    assert "no model bundle at models/default" in capsys.readouterr().err
    (models_dir / "a").rename(models_dir / "default")
    assert main(["serve"]) == 0
    assert env["RUNG_MODEL"] == str((models_dir / "default").absolute())


def test_serve_check_loads_the_model_and_exits(tiny_bundles, env, uvicorn_calls, capsys):
    assert main(["serve", "--model", str(tiny_bundles["a"]), "--check"]) == 0
    out = capsys.readouterr().out
    assert "ok: a@" in out and "small < medium < large" in out
    assert uvicorn_calls == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/nonexistent/bundle"], "no model bundle at /nonexistent/bundle"),
        (["--port", "0"], "--port must lie in 1..65535"),
        (["--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_serve_reports_mistakes_in_one_line(
    tiny_bundles, env, uvicorn_calls, capsys, argv, message
):
    if "--model" not in argv:
        argv = [*argv, "--model", str(tiny_bundles["a"])]
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert uvicorn_calls == []


def test_serve_reports_bad_settings_from_the_environment(tiny_bundles, env, uvicorn_calls, capsys):
    env["RUNG_EXPLORE_RATE"] = "0.9"
    assert main(["serve", "--model", str(tiny_bundles["a"])]) == 2
    assert "RUNG_EXPLORE_RATE" in capsys.readouterr().err


def test_serve_check_refuses_a_broken_bundle(tiny_bundles, tmp_path, env, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundles["a"], bad)
    (bad / "classifier.onnx").write_bytes(b"junk")
    assert main(["serve", "--model", str(bad), "--check"]) == 1  # refused, not a usage error
    assert "does not match its sha256" in capsys.readouterr().err


def test_bench_train_dispatches_lazily_with_its_defaults(monkeypatch):
    seen: list[Any] = []
    fake = types.ModuleType("train.bench.train")
    fake.run = lambda args: seen.append(args) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "train.bench.train", fake)
    import train.bench

    monkeypatch.setattr(train.bench, "train", fake, raising=False)
    assert main(["bench", "train"]) == 0
    assert seen[0].data == "data/queries" and seen[0].shared == Path("../shared/data")
    assert seen[0].cold is False


def test_bench_serve_runs_end_to_end_and_writes_json(models_dir, tmp_path, capsys, env):
    set_current(models_dir, "a")
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--model",
                str(models_dir / "a"),
                "--requests",
                "40",
                "--load-requests",
                "40",
                "--concurrency",
                "2",
                "--in-process",
                "50",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| HTTP p50 (short text) |" in table and "no-op" in table and "cores" in table
    result = json.loads(out.read_text())
    assert result["http"]["rung"]["n"] == 40 and result["http"]["noop"]["n"] == 40
    assert result["throughput_rps"]["rung"] > 0 and result["rss_mb"]["rung"] > 0
    assert result["requests_per_cpu_s"]["rung"] > 0  # the per-core figure docs/scaling.md uses
    assert result["cold_start_s"]["rung"] > 0
    assert result["in_process"]["150 words"]["n"] == 50
    graph = result["in_process"]["graph"]  # the classifier graph's own share of a decision
    assert graph["nodes"] == read_manifest(models_dir / "a").classifier["graph_nodes"]
    assert 0 < graph["p50_us"] <= graph["p99_us"]
    assert f"| classifier graph p50 per run (one row, {graph['nodes']} nodes) |" in table
