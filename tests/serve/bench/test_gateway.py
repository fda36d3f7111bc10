"""`rung bench gateway` runs end to end (a few rounds): real processes, real LiteLLM."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("litellm")


def test_bench_gateway_prints_the_table_and_writes_json(tiny_bundles, tmp_path, capsys):
    from train.cli import main

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    out = tmp_path / "gw.json"
    code = main(
        [
            "bench",
            "gateway",
            "--model",
            str(tiny_bundles["a"]),
            "--requests",
            "5",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "rung's classifier plugin" in printed and "asyncio client" in printed
    res = json.loads(out.read_text())
    assert set(res["through_litellm"]) == {"baseline", "constant", "plugin", "hook"}
    assert all(row["n"] == 5 for row in res["through_litellm"].values())
    assert res["clients"]["asyncio client"]["n"] == 15


def test_bench_gateway_refuses_a_bad_request_count(tiny_bundles, capsys):
    from train.cli import main

    code = main(["bench", "gateway", "--model", str(tiny_bundles["a"]), "--requests", "0"])
    assert code != 0 and "--requests must be >= 1" in capsys.readouterr().err
