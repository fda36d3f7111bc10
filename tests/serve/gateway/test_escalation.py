"""The gateway's escalation-log writer: valid lines, rotation, never blocking, hash by default;
and what `rung retrain`'s reader makes of them (reports merge, hash-only lines refused)."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest

from serve.gateway.escalation import EscalationLog, attempt_line, sha256_text
from serve.gateway.settings import GatewaySettings, parse_map
from serve.model.ladder import default_ladder
from train.data.logs import LogError
from train.data.logset import load_logs


def read_lines(log: EscalationLog) -> list[dict]:
    return [json.loads(line) for f in log.files() for line in f.read_text().splitlines()]


def test_lines_are_written_in_order_with_the_hash_and_not_the_text(tmp_path: Path):
    log = EscalationLog(tmp_path)
    for i in range(300):
        log.append(attempt_line(f"r{i}", "small", "success", text=f"prompt {i}", cost_usd=0.001))
    assert log.flush()
    lines = read_lines(log)
    assert [line["request_id"] for line in lines] == [f"r{i}" for i in range(300)]
    assert lines[7]["text_sha256"] == sha256_text("prompt 7") and "text" not in lines[7]
    assert log.stats == {"queued": 300, "written": 300, "dropped": 0, "errors": 0}
    log.close()


def test_files_rotate_by_size_and_a_restart_appends_to_the_newest(tmp_path: Path):
    log = EscalationLog(tmp_path, max_bytes=2000)
    for i in range(60):
        log.append(attempt_line(f"r{i}", "small", "success", text="x" * 20, keep_text=True))
        log.flush()
    log.close()
    files = log.files()
    assert len(files) > 3 and all(f.stat().st_size <= 2000 for f in files)
    again = EscalationLog(tmp_path, max_bytes=2000)
    again.append(attempt_line("last", "small", "success", text="y"))
    again.flush()
    again.close()
    newest = max(again.files(), key=lambda f: f.stat().st_mtime_ns)
    index = {f: int(f.stem.split("-")[2]) if f.stem.count("-") == 2 else 0 for f in files}
    assert newest == max(files, key=index.__getitem__)
    assert json.loads(newest.read_text().splitlines()[-1])["request_id"] == "last"


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path):
    log = EscalationLog(tmp_path, queue_size=5)
    gate = threading.Event()
    write = log._write
    log._write = lambda lines: (gate.wait(5), write(lines))  # a disk that stalls
    log.append(attempt_line("first", "small", "success"))
    time.sleep(0.05)  # the writer holds "first" and stalls
    start = time.perf_counter()
    accepted = [log.append(attempt_line(f"r{i}", "small", "success")) for i in range(20)]
    elapsed = time.perf_counter() - start
    gate.set()
    assert log.flush()
    assert accepted == [True] * 5 + [False] * 15
    assert elapsed < 0.05  # 20 appends against a stalled disk return at once
    assert log.stats["dropped"] == 15 and log.stats["written"] == 6
    log.close()


def test_an_unwritable_folder_counts_errors_and_never_raises(tmp_path: Path):
    log = EscalationLog(tmp_path)
    log.append(attempt_line("a", "small", "success", bad=object()))  # not JSON-serialisable
    assert log.flush()
    assert log.stats["errors"] == 1 and "TypeError" in log.last_error
    log.close()
    assert log.append(attempt_line("late", "small", "success")) is False


def test_an_attempt_line_refuses_an_unknown_outcome():
    with pytest.raises(ValueError, match="outcome"):
        attempt_line("r", "small", "ok")


def _write(tmp_path: Path, lines: list[dict]) -> Path:
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_reported_outcomes_override_the_gateway_for_their_tier(tmp_path: Path):
    lines = [
        attempt_line("r1", "small", "success", text="q1", keep_text=True, attempt=0, cost_usd=1),
        attempt_line("r2", "medium", "success", text="q2", keep_text=True, attempt=0),
        attempt_line("r1", "small", "failure", source="report"),  # a validator said no
        attempt_line("r3", "small", "failure", text="q3", keep_text=True, attempt=0),
        attempt_line("r3", "medium", "success", text="q3", keep_text=True, attempt=1),
        attempt_line("r3", "large", "success", source="report"),  # never tried by the gateway
    ]
    logs = load_logs([_write(tmp_path, lines)], default_ladder())
    assert logs.dataset.problems == [] and logs.summary.bad_lines == 0
    q = {rid: list(row) for rid, row in zip(logs.dataset.ids, logs.dataset.quality, strict=True)}
    assert q["r1"][0] == 0.0 and math.isnan(q["r1"][1])  # small failed; nothing else known
    assert logs.dataset.cost[logs.dataset.ids.index("r1")][0] == 1  # the gateway's cost kept
    assert q["r2"][1:] == [1.0, 1.0] and math.isnan(q["r2"][0])
    assert q["r3"] == [0.0, 1.0, 1.0]


def test_a_report_written_to_a_later_file_joins_its_request(tmp_path: Path):
    first, second = tmp_path / "escalations-20261202.jsonl", tmp_path / "escalations-20261203.jsonl"
    line = attempt_line("r1", "small", "success", text="q1", keep_text=True, attempt=0)
    first.write_text(json.dumps(line) + "\n")
    second.write_text(json.dumps(attempt_line("r1", "small", "failure", source="report")) + "\n")
    logs = load_logs([tmp_path], default_ladder())
    assert logs.dataset.problems == [] and logs.dataset.ids == ["r1"]
    assert logs.dataset.quality[0][0] == 0.0


def test_hash_only_logs_are_refused_for_training_with_what_to_do(tmp_path: Path):
    lines = [attempt_line(f"r{i}", "small", "failure", text=f"q{i}") for i in range(3)]
    with pytest.raises(LogError, match="RUNG_ESCALATION_LOG_TEXT=true"):
        load_logs([_write(tmp_path, lines)], default_ladder())
    lines.append(attempt_line("t", "small", "failure", text="kept", keep_text=True))
    lines.append(attempt_line("t", "medium", "success", text="kept", keep_text=True))
    logs = load_logs([_write(tmp_path, lines)], default_ladder())
    assert logs.dataset.ids == ["t"]
    assert logs.summary.hash_only == 3 and logs.summary.bad_lines == 0
    assert any("hash only" in line for line in logs.summary.lines())


def test_settings_read_maps_from_the_environment(monkeypatch):
    monkeypatch.setenv("RUNG_TIER_MAP", "small=SIMPLE, large=COMPLEX")
    monkeypatch.setenv("RUNG_MODEL_GROUPS", '{"small": "cheap", "large": "big"}')
    monkeypatch.setenv("RUNG_TIMEOUT_MS", "20")
    s = GatewaySettings()
    assert s.tier_map == {"small": "SIMPLE", "large": "COMPLEX"}
    assert s.model_groups == {"small": "cheap", "large": "big"} and s.timeout_ms == 20
    with pytest.raises(ValueError, match="name=value"):
        parse_map("small")


def test_rung_retrain_refuses_hash_only_logs_in_one_line(tmp_path: Path, tiny_bundles, capsys):
    from train.cli import main

    lines = [attempt_line(f"r{i}", "small", "failure", text=f"q{i}") for i in range(3)]
    code = main(
        [
            "retrain",
            "--base",
            str(tiny_bundles["a"]),
            "--logs",
            str(_write(tmp_path, lines)),
            "--out",
            str(tmp_path / "cand"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "hash only" in err and "RUNG_ESCALATION_LOG_TEXT=true" in err
