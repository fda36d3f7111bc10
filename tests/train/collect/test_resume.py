"""Killing `rung collect` mid-run loses at most the calls in flight; rerunning finishes the
table with no duplicated and no lost rows. The judge's failures are re-scored, not re-asked."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.fake_llm import Rule
from tests.support.paths import ROOT
from tests.train.collect.helpers import KEY_ENV, write_ladder, write_prompts
from train.cli import main
from train.collect.journal import SCHEMA, Journal

N = 12


def _records(journal: Path) -> list[dict]:
    out = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("schema") != SCHEMA:
            out.append(obj)
    return out


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path, llm):
    ladder = write_ladder(tmp_path / "l.toml", llm.base_url, concurrency=2)
    rows = [{"id": f"k{i}", "text": f"k{i} say hello", "expected": "hello"} for i in range(N)]
    prompts = write_prompts(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.journal.jsonl"
    llm.rules.append(Rule(delay_s=0.25, answer="hello"))
    args = ["collect", "--prompts", str(prompts), "--ladder", str(ladder), "--out", str(out)]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", KEY_ENV: "k"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", *args, "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and len(_records(journal)) >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    before = _records(journal)
    assert 6 <= len(before) < 3 * N
    time.sleep(0.5)  # calls the killed process left in flight reach the server's log
    first_calls = len(llm.calls)
    lost = first_calls - len(before)
    assert 0 <= lost <= 6  # the calls in flight, two per tier at most: all a kill may lose
    llm.rules.clear()
    llm.responder = lambda model, text: "hello"
    assert main([*args, "--quiet"]) == 0
    after = _records(journal)
    pairs = [(r["id"], r["tier"]) for r in after]
    assert len(pairs) == len(set(pairs)) == 3 * N  # every pair once: none redone, none lost
    assert len(llm.calls) == first_calls + 3 * N - len(before)  # only the missing pairs
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert sorted(r["sample_id"] for r in table) == sorted(f"k{i}" for i in range(N))
    assert all(r[f"{t}-model"] == "1" for r in table for t in ("small", "medium", "large"))


def test_a_torn_last_line_is_skipped_and_sealed(tmp_path, llm):
    ladder = write_ladder(tmp_path / "l.toml", llm.base_url)
    prompts = write_prompts(tmp_path / "p.jsonl", [{"id": "a", "text": "hi", "expected": "x"}])
    out = tmp_path / "o.csv"
    args = ["collect", "--prompts", str(prompts), "--ladder", str(ladder), "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    journal = tmp_path / "o.csv.journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][:25])  # the kill hit mid-write
    assert Journal(journal, "exact").bad_lines == 1
    calls = len(llm.calls)
    assert main([*args, "--quiet"]) == 0
    assert len(llm.calls) == calls + 1  # only the torn pair is asked again
    assert Journal(journal, "exact").bad_lines == 1 and len(_records(journal)) == 3


def test_failed_judge_is_rescored_without_asking_the_tier_again(tmp_path, llm):
    ladder = write_ladder(tmp_path / "l.toml", llm.base_url, judge=True)
    rows = [{"id": f"j{i}", "text": f"j{i} explain"} for i in range(3)]
    prompts = write_prompts(tmp_path / "p.jsonl", rows)
    out = tmp_path / "o.csv"
    llm.rules += [
        Rule(model="judge", contains="j1 explain", status=500),
        Rule(model="judge", answer="Fine.\nGRADE: 4"),
    ]
    args = ["collect", "--prompts", str(prompts), "--ladder", str(ladder), "--out", str(out)]
    args += ["--scorer", "judge", "--attempts", "1", "--quiet"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["judge"]["calls"] == 9 and summary["judge"]["errors"] == 3
    assert summary["judge"]["cost_usd"] > 0
    tier_calls = [c for c in llm.calls if c.model != "judge"]
    assert len(tier_calls) == 9
    llm.rules.pop(0)
    assert main(args) == 0
    assert len([c for c in llm.calls if c.model != "judge"]) == 9  # tiers not asked again
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert all(r["small-model"] == "0.75" for r in table)
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["judge"]["errors"] == 0 and summary["run"]["calls"] == 0
    assert summary["run"]["judge_calls"] == 3


def test_ctrl_c_writes_the_table_of_what_is_done(tmp_path, llm):
    ladder = write_ladder(tmp_path / "l.toml", llm.base_url, concurrency=1)
    rows = [{"id": f"i{i}", "text": f"i{i} hello", "expected": "hello"} for i in range(N)]
    prompts = write_prompts(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.journal.jsonl"
    llm.rules.append(Rule(delay_s=0.3, answer="hello"))
    args = ["collect", "--prompts", str(prompts), "--ladder", str(ladder), "--out", str(out)]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", KEY_ENV: "k"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", *args, "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and len(_records(journal)) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    done = {r["id"] for r in _records(journal)}
    with open(out, newline="", encoding="utf-8") as fh:
        table = {r["sample_id"] for r in csv.DictReader(fh)}
    assert table == done and 1 <= len(done) < N
