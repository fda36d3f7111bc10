"""`rung collect` on the command line: progress, --limit, one-line errors for bad input, and
the table it writes trains a bundle that `rung eval` scores with the monthly projection."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.fake_llm import Rule
from tests.support.tiny_data import rows as tiny_rows
from tests.train.collect.helpers import KEY_ENV, write_ladder, write_prompts
from train.cli import main

TIERS = ["small", "medium", "large"]


def _setup(tmp_path, llm, rows=None, **kw):
    ladder = write_ladder(tmp_path / "l.toml", llm.base_url, **kw)
    rows = rows or [{"id": f"c{i}", "text": f"c{i} hi", "expected": "answer"} for i in range(4)]
    prompts = write_prompts(tmp_path / "p.jsonl", rows)
    base = ["collect", "--prompts", str(prompts), "--ladder", str(ladder)]
    return base + ["--out", str(tmp_path / "o.csv")]


def test_progress_bar_shows_calls_errors_and_spend(tmp_path, llm, capsys):
    assert main([*_setup(tmp_path, llm), "--limit", "2"]) == 0
    err = capsys.readouterr().err
    assert "6/6" in err and "pairs" in err
    assert re.search(r"calls 6, errors 0, spend \$0\.\d{4}", err)
    assert len(llm.calls) == 6  # --limit 2: two prompts x three tiers


def test_cascade_progress_counts_prompts(tmp_path, llm, capsys):
    llm.responder = lambda model, text: "answer" if model == "medium" else "nope"
    assert main([*_setup(tmp_path, llm), "--mode", "cascade"]) == 0
    captured = capsys.readouterr()
    assert "4/4" in captured.err and "prompts" in captured.err
    assert len(llm.calls) == 8 and "note: cascade" in captured.out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--scorer", "fuzzy"], "unknown --scorer 'fuzzy'"),
        (["--scorer", "judge"], "[judge] table"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--max-cost", "0"], "--max-cost must be > 0"),
        (["--out", "x.json"], "--out must name a .csv"),
        (["--json-schema", "nope.json", "--scorer", "json"], "JSON Schema file not found"),
        (["--prompts", "missing.jsonl"], "data file not found: missing.jsonl"),
        (["--ladder", "missing.toml"], "ladder file not found"),
    ],
)
def test_bad_arguments_end_in_one_line(tmp_path, llm, capsys, change, message):
    args = _setup(tmp_path, llm)
    flag = change[0]
    if flag in args:
        i = args.index(flag)
        args[i : i + 2] = change[:2]
        change = change[2:]
    assert main([*args, *change]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rung collect: error:") and message in err[0]
    assert not llm.calls


@pytest.mark.parametrize(
    ("rows", "ladder_extra", "message"),
    [
        ([{"id": "a", "text": "hi"}], {}, "needs `expected` in every prompt; 1 of 1"),
        ([{"id": "a", "expected": "x"}], {}, "p.jsonl:1: needs a non-empty `text` or `messages`"),
        (
            [{"id": "a", "text": "x", "expected": "y"}, {"id": "a", "text": "z", "expected": "y"}],
            {},
            "id 'a' is also used at",
        ),
        ([{"id": "a", "messages": "hello", "expected": "y"}], {}, "messages must be a list"),
    ],
)
def test_bad_prompts_end_in_one_line(tmp_path, llm, capsys, rows, ladder_extra, message):
    assert main(_setup(tmp_path, llm, rows, **ladder_extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_ladder_without_call_fields_or_key_is_refused(tmp_path, llm, capsys, monkeypatch):
    args = _setup(tmp_path, llm)
    args[args.index("--ladder") + 1] = "data/ladders/routerbench.toml"
    assert main(args) == 2
    assert "have no litellm_model" in capsys.readouterr().err
    monkeypatch.delenv(KEY_ENV)
    assert main(_setup(tmp_path, llm)) == 2
    err = capsys.readouterr().err
    assert f"environment variable {KEY_ENV} (api_key_env) is not set" in err
    assert "test-key" not in err


def test_resuming_with_another_scorer_is_refused(tmp_path, llm, capsys):
    args = _setup(tmp_path, llm)
    assert main([*args, "--quiet"]) == 0
    assert main([*args, "--scorer", "contains", "--quiet"]) == 2
    assert "was written with --scorer exact" in capsys.readouterr().err
    numeric = [*args[:-1], str(tmp_path / "n.csv"), "--scorer", "numeric", "--quiet"]
    assert main(numeric) == 0
    assert main([*numeric, "--tolerance", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "written with --scorer numeric --tolerance 1e-06, not numeric --tolerance 0.01" in err


def test_collected_table_trains_a_bundle_that_eval_scores_with_a_projection(tmp_path, llm, capsys):
    """Tier t answers right exactly the hand-labelled rows of tier <= t: the collected table
    carries the same labels as the labelled set, and the pipeline runs on it end to end."""
    labelled = tiny_rows()
    want = {r["text"]: TIERS.index(r["tier"]) for r in labelled}
    llm.responder = lambda model, text: "right" if TIERS.index(model) >= want[text] else "wrong"
    prompts = [{"id": r["id"], "text": r["text"], "expected": "right"} for r in labelled]
    args = _setup(tmp_path, llm, prompts)
    assert main([*args, "--quiet", "--requests-per-day", "5000"]) == 0
    out = capsys.readouterr().out
    assert "large vs medium" in out and "USD/month" in out
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert [t["pass_rate"] for t in summary["tiers"]] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert summary["monthly"][0]["requests_per_day"] == 5000
    table, ladder = str(tmp_path / "o.csv"), str(tmp_path / "l.toml")
    bundle = str(tmp_path / "bundle")
    assert main(["train", "--data", table, "--ladder", ladder, "--out", bundle, "--quiet"]) == 0
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["data"]["inputs"][0]["format"] == "routerbench"
    assert manifest["ladder"]["tiers"][0]["litellm_model"] == "openai/small"
    capsys.readouterr()
    assert main(["eval", "--model", bundle, "--data", table, "--requests-per-day", "1000"]) == 0
    out = capsys.readouterr().out
    m = re.search(
        r"at 1,000 requests a day, always-top costs \$([\d.,]+) a month, rung's routing "
        r"\$([\d.,]+), saving \$([\d.,-]+)",
        out,
    )
    assert m, out
    top, routed, saving = (float(x.replace(",", "")) for x in m.groups())
    # The projection's arithmetic; on this tiny table the calibrated utility rule may send
    # everything to the top tier (no saving), so routed <= top.
    assert top == pytest.approx(routed + saving, abs=0.011) and routed <= top


def test_a_tier_whose_calls_all_fail_for_good_stops_the_run_early(tmp_path, llm, capsys):
    llm.rules.append(Rule(model="medium", status=401))
    rows = [{"id": f"f{i}", "text": f"f{i} hi", "expected": "answer"} for i in range(40)]
    args = _setup(tmp_path, llm, rows, concurrency=2)
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rung collect: error: tier 'medium': its first 5 calls all failed")
    assert "401" in err[-1] and "api_key_env" in err[-1] and len(err) == 2  # banner, error
    assert 5 <= len(llm.calls_for("medium")) <= 5 + 2  # the calls in flight finish
    assert len(llm.calls) < 3 * 40
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["run"]["aborted"] and summary["run"]["pending"] > 0


def test_a_model_litellm_cannot_route_is_refused_before_any_call(tmp_path, llm, capsys):
    args = _setup(tmp_path, llm)
    ladder = tmp_path / "l.toml"
    ladder.write_text(ladder.read_text().replace('"openai/medium"', '"no-such-provider/m"', 1))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LiteLLM cannot tell the provider of 'no-such-provider/m'" in err[0]
    assert not llm.calls
