"""Escalation logs: label derivation, both layouts, malformed lines, refusal of useless logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from serve.model.ladder import Ladder, Tier, UnsolvedPolicy, default_ladder
from train.data.files import detect_format
from train.data.load import load_dataset, read_texts
from train.data.logs import Attempt, LogError, Outcome, derive_labels, parse_ts
from train.data.logset import load_logs, newest_mask
from train.data.types import SourceFormat

NAN = math.nan
LADDER = default_ladder()  # small < medium < large


def _req(
    rid: str,
    attempts: list[tuple[str, str]],
    *,
    ts: str = "2026-11-22T10:00:00Z",
    explore: bool = False,
    text: str | None = None,
    **extra,
) -> dict:
    rec = {
        "request_id": rid,
        "ts": ts,
        "routed_tier": attempts[0][0],
        "model_version": "m@1",
        "explore": explore,
        "attempts": [
            {"tier": t, "outcome": o, "cost_usd": 0.001 * (i + 1), "latency_ms": 100}
            for i, (t, o) in enumerate(attempts)
        ],
    }
    if text is not None or "messages" not in extra:
        rec["text"] = text or f"request {rid}"
    rec.update(extra)
    return rec


def _write(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _quality(ds, rid: str) -> list[float]:
    return ds.quality[ds.ids.index(rid)].tolist()


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------- label rules


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        ([("small", "failure"), ("medium", "success")], [0.0, 1.0, 1.0]),  # escalated once
        ([("small", "success")], [1.0, 1.0, 1.0]),  # cheapest worked: all known
        ([("medium", "success")], [NAN, 1.0, 1.0]),  # small never tried: unknown, not a guess
        ([("large", "success")], [NAN, NAN, 1.0]),  # censored: nothing below the top is known
        ([("medium", "failure"), ("large", "failure")], [NAN, 0.0, 0.0]),  # unsolved
        ([("small", "failure")], [0.0, NAN, NAN]),  # cascade cut short: only the failure
    ],
)
def test_label_rules(attempts, expected):
    parsed = [Attempt(LADDER.index(t), Outcome(o)) for t, o in attempts]
    labels = derive_labels(parsed, 3)
    assert _same(labels.quality, expected)
    assert labels.observed == [any(t == n for t, _ in attempts) for n in LADDER.names]
    assert not labels.conflict and not labels.order_violation


def test_conflicting_and_out_of_order_outcomes_are_never_guessed():
    retry = [Attempt(0, Outcome.FAILURE), Attempt(0, Outcome.SUCCESS)]
    labels = derive_labels(retry, 3)  # small both failed and succeeded: unknown
    assert labels.conflict and _same(labels.quality, [NAN, NAN, NAN])
    odd = [Attempt(0, Outcome.SUCCESS), Attempt(2, Outcome.FAILURE)]
    labels = derive_labels(odd, 3)  # a failure above a success: the observation is kept
    assert labels.order_violation and _same(labels.quality, [1.0, 1.0, 0.0])


def test_parse_ts_accepts_z_offsets_naive_and_epoch():
    assert parse_ts("2026-11-22T10:00:00Z") == parse_ts("2026-11-22T11:00:00+01:00")
    assert parse_ts("2026-11-22T10:00:00") == parse_ts("2026-11-22T10:00:00Z")
    assert parse_ts(0).year == 1970


# ---------------------------------------------------------------- request layout


def test_request_layout_labels_costs_explore_and_counts(tmp_path):
    path = _write(
        tmp_path / "logs.jsonl",
        [
            _req(
                "fail-then-ok",
                [("small", "failure"), ("medium", "success")],
                ts="2026-11-22T10:00:01Z",
            ),
            _req("routed-medium", [("medium", "success")], ts="2026-11-22T10:00:02Z"),
            _req("censored", [("large", "success")], ts="2026-11-22T10:00:03Z"),
            _req("explored", [("small", "success")], explore=True, ts="2026-11-22T10:00:04Z"),
            _req(
                "chat",
                [("small", "failure"), ("medium", "failure"), ("large", "success")],
                messages=[
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "Prove it."},
                ],
            ),
        ],
    )
    logs = load_logs([path], LADDER)
    ds, s = logs.dataset, logs.summary
    assert _same(_quality(ds, "fail-then-ok"), [0.0, 1.0, 1.0])
    assert _same(_quality(ds, "routed-medium"), [NAN, 1.0, 1.0])
    assert _same(_quality(ds, "censored"), [NAN, NAN, 1.0])
    assert _same(_quality(ds, "explored"), [1.0, 1.0, 1.0])
    assert _same(_quality(ds, "chat"), [0.0, 0.0, 1.0])
    assert ds.texts[ds.ids.index("chat")] == "Prove it."  # messages stand in for text
    # What the gateway paid lands on the tiers it tried; untried tiers stay unknown.
    assert _same(ds.cost[ds.ids.index("fail-then-ok")].tolist(), [0.001, 0.002, NAN])
    assert ds.times[0] < ds.times[1] and ds.times[0].startswith("2026-11-22T10:00:01")
    assert (s.requests, s.explore, s.informative, s.bad_lines) == (5, 1, 4, 0)
    assert s.known == [3, 4, 5]  # small known on 3 requests, medium on 4, large on all 5
    assert s.observed == [3, 3, 2]  # ... of which this many actually tried it
    assert (s.sufficient, s.insufficient) == ([1, 3, 5], [2, 1, 0])
    assert s.to_dict()["per_tier"]["small"] == {
        "known": 3,
        "tried": 3,
        "sufficient": 1,
        "insufficient": 2,
    }
    assert any("small: known on 3 requests" in line for line in s.lines())


def test_logs_are_detected_and_read_by_the_data_layer(tmp_path):
    path = _write(
        tmp_path / "logs.jsonl",
        [
            _req("a", [("small", "failure"), ("medium", "success")]),
            _req("b", [("large", "success")]),
        ],
    )
    assert detect_format(path) is SourceFormat.LOGS
    ds = load_dataset([path], LADDER)  # through the registered reader
    assert ds.ids == ["a", "b"] and ds.labels.tolist() == [1, 2]
    rows, problems = read_texts([path])
    assert [r.text for r in rows] == ["request a", "request b"] and not problems


# ---------------------------------------------------------------- attempt layout


def test_attempt_layout_groups_by_request_id_in_attempt_order(tmp_path):
    lines = [
        {
            "request_id": "r1",
            "ts": "2026-11-22T10:00:05Z",
            "tier": "medium",
            "outcome": "success",
            "attempt": 2,
            "cost_usd": 0.0004,
        },
        {
            "request_id": "r2",
            "ts": "2026-11-22T10:00:09Z",
            "tier": "large",
            "outcome": "success",
            "text": "hard one",
            "explore": False,
        },
        {
            "request_id": "r1",
            "ts": "2026-11-22T10:00:04Z",
            "tier": "small",
            "outcome": "failure",
            "attempt": 1,
            "messages": [{"role": "user", "content": "easy one"}],
        },
        {
            "request_id": "r3",
            "ts": "2026-11-22T10:00:07Z",
            "tier": "small",
            "outcome": "success",
            "text": "explored one",
            "explore": True,
        },
    ]
    logs = load_logs([_write(tmp_path / "attempts.jsonl", lines)], LADDER)
    ds = logs.dataset
    assert sorted(ds.ids) == ["r1", "r2", "r3"]
    assert _same(_quality(ds, "r1"), [0.0, 1.0, 1.0])
    assert ds.texts[ds.ids.index("r1")] == "easy one"
    assert ds.times[ds.ids.index("r1")].startswith("2026-11-22T10:00:04")  # the first attempt
    assert _same(_quality(ds, "r2"), [NAN, NAN, 1.0])
    assert _same(_quality(ds, "r3"), [1.0, 1.0, 1.0])
    assert logs.summary.explore == 1 and logs.summary.requests == 3


# ---------------------------------------------------------------- malformed input


def test_malformed_lines_are_reported_with_line_numbers_and_the_rest_is_read(tmp_path):
    path = _write(
        tmp_path / "mixed.jsonl",
        [
            _req("ok-1", [("small", "failure"), ("medium", "success")]),  # line 1
            '{"request_id": "broken", "ts": ',  # line 2: not JSON
            _req("bad-tier", [("tiny", "success")]),  # line 3
            _req("no-text", [("small", "success")], text="   "),  # line 4
            _req("bad-outcome", [("small", "maybe")]),  # line 5
            "[1, 2, 3]",  # line 6
            _req("ok-1", [("small", "success")]),  # line 7: duplicate id
            {"request_id": "g", "tier": "small", "outcome": "failure"},  # line 8: no ts, group bad
            {
                "request_id": "g",
                "ts": "2026-01-01T00:00:00Z",
                "tier": "medium",
                "outcome": "success",
                "text": "x",
            },  # line 9
            _req("no-ts", [("small", "success")], ts="yesterday"),  # line 10
            {"hello": "world"},  # line 11
            "",  # blank lines are skipped, not errors
            _req("ok-2", [("medium", "success")]),  # line 13
        ],
    )
    logs = load_logs([path], LADDER)
    assert logs.dataset.ids == ["ok-1", "ok-2"]
    where = {p.line: p.reason for p in logs.dataset.problems}
    assert set(where) == {2, 3, 4, 5, 6, 7, 8, 10, 11}
    assert "invalid JSON" in where[2]
    assert "unknown tier 'tiny'" in where[3]
    assert "text" in where[4]
    assert "outcome must be" in where[5]
    assert "not a JSON object" in where[6]
    assert "duplicate request_id 'ok-1' (first on line 1)" in where[7]
    assert "missing ts" in where[8] and "request 'g' dropped" in where[8]
    assert "not ISO 8601" in where[10]
    assert "neither a request line" in where[11]
    assert all(str(p).startswith(f"{path}:") for p in logs.dataset.problems)
    assert logs.summary.bad_lines == 9
    assert logs.dataset.inputs[0].bad_rows == 9 and logs.dataset.inputs[0].rows == 2


def test_a_log_with_no_usable_information_is_refused(tmp_path):
    top_only = _write(
        tmp_path / "top.jsonl", [_req(f"r{i}", [("large", "success")]) for i in range(5)]
    )
    with pytest.raises(LogError, match="none says whether a tier below the top"):
        load_logs([top_only], LADDER)
    junk = _write(tmp_path / "junk.jsonl", ["not json", '{"a": 1}'])
    with pytest.raises(LogError, match=r"no usable requests .*2 malformed lines"):
        load_logs([junk], LADDER)


def test_duplicates_across_files_are_reported_not_double_counted(tmp_path):
    a = _write(tmp_path / "a.jsonl", [_req("r1", [("small", "success")])])
    b = _write(tmp_path / "b.jsonl", [_req("r1", [("small", "failure"), ("medium", "success")])])
    logs = load_logs([a, b], LADDER)
    assert logs.dataset.ids == ["r1"] and logs.summary.duplicates == 1
    assert "already read from another file" in logs.dataset.problems[0].reason


def test_drop_policy_drops_only_requests_known_to_be_unsolved(tmp_path):
    ladder = Ladder((Tier("small"), Tier("large")), unsolved=UnsolvedPolicy.DROP)
    path = _write(
        tmp_path / "logs.jsonl",
        [
            _req("unsolved", [("small", "failure"), ("large", "failure")]),
            _req("cut-short", [("small", "failure")]),
            _req("solved", [("small", "success")]),
        ],
    )
    logs = load_logs([path], ladder)
    assert logs.dataset.ids == ["cut-short", "solved"] and logs.summary.dropped_unsolved == 1


def test_newest_mask_holds_out_the_latest_requests():
    times = ["2026-01-03", "2026-01-01", "2026-01-05", "2026-01-02", "2026-01-04"]
    assert newest_mask(times, 0.4).tolist() == [False, False, True, False, True]
    assert newest_mask(times, 0.01).sum() == 1
    with pytest.raises(LogError):
        newest_mask(times, 1.0)
    assert np.sum(newest_mask(["x"], 0.2)) == 0
