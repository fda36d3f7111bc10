"""The data layer on hand-made files of every layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from serve.model.ladder import Ladder, LadderError, UnsolvedPolicy, default_ladder
from train.data.files import detect_format
from train.data.load import load_dataset, read_texts
from train.data.types import DataError, SourceFormat, split_holdout

TWO_TIER_TOML = """
pass_mark = 0.5
unsolved = "drop"
[[tiers]]
name = "small"
model = "weak"
input_price = 0.1
output_price = 0.2
[[tiers]]
name = "large"
model = "strong"
input_price = 5
output_price = 15
"""


def test_ladder_from_toml_round_trips(tmp_path):
    path = tmp_path / "ladder.toml"
    path.write_text(TWO_TIER_TOML)
    ladder = Ladder.from_toml(path)
    assert ladder.names == ["small", "large"]
    assert ladder.unsolved is UnsolvedPolicy.DROP
    assert ladder.tiers[1].estimate_cost(1000) == pytest.approx((1000 * 5 + 300 * 15) / 1e6)
    assert Ladder.from_dict(ladder.to_dict()) == ladder


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[tiers]]\nname = "only"\n', "two or more tiers"),
        ('[[tiers]]\nname = "a"\n[[tiers]]\nname = "a"\n', "unique"),
        ('unsolved = "maybe"\n[[tiers]]\nname = "a"\n[[tiers]]\nname = "b"\n', "unsolved"),
        ('pass_mark = 2\n[[tiers]]\nname = "a"\n[[tiers]]\nname = "b"\n', "pass_mark"),
        ('[[tiers]]\nname = "a"\ncolour = 1\n[[tiers]]\nname = "b"\n', "unknown keys"),
        ("tiers = [", "not valid TOML"),
    ],
)
def test_bad_ladders_are_refused_with_the_reason(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(LadderError, match=message):
        Ladder.from_toml(path)


def test_labelled_jsonl_counts_bad_rows_with_line_numbers(tmp_path):
    path = tmp_path / "q.jsonl"
    lines = [
        {"id": "a", "text": "hello", "tier": "small"},
        {"id": "b", "text": "   ", "tier": "small"},
        {"id": "c", "text": "plan my launch", "tier": "huge"},
        "{not json",
        {
            "id": "e",
            "messages": [{"role": "user", "content": "prove it"}],
            "tier": "large",
            "weight": 2,
        },
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    ds = load_dataset([path], default_ladder())
    assert ds.ids == ["a", "e"]
    assert ds.texts == ["hello", "prove it"]
    np.testing.assert_array_equal(ds.labels, [0, 2])
    np.testing.assert_array_equal(ds.quality, [[1, 1, 1], [0, 0, 1]])
    assert ds.weights.tolist() == [1.0, 2.0]
    assert [(p.line, p.reason.split(":")[0]) for p in ds.problems] == [
        (2, "missing or empty text"),
        (3, "unknown tier 'huge'; the ladder has ['small', 'medium', 'large']"),
        (4, "invalid JSON"),
    ]


def test_a_lone_surrogate_is_a_bad_row_not_a_crash(tmp_path):
    """Python's json decodes an escaped lone surrogate, which no tokenizer can encode."""
    path = tmp_path / "q.jsonl"
    lines = [
        '{"id": "a", "text": "caf\\u00e9 \\ud83d\\ude00", "tier": "small"}',  # a real pair
        '{"id": "b", "text": "broken \\ud800 half", "tier": "small"}',
        '{"id": "c", "text": "fine", "tier": "large"}',
    ]
    path.write_text("\n".join(lines))
    ds = load_dataset([path], default_ladder())
    assert ds.ids == ["a", "c"] and ds.texts[0] == "café \U0001f600"
    assert [(p.line, "lone surrogate" in p.reason) for p in ds.problems] == [(2, True)]


def test_labelled_csv_reads(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('text,tier\n"hi, you",small\nwhat is 2+2,medium\n')
    ds = load_dataset([path], default_ladder())
    assert ds.texts == ["hi, you", "what is 2+2"]
    assert ds.rows_per_tier() == {"small": 1, "medium": 1, "large": 0}


def _routerbench_csv(path):
    header = (
        "idx,sample_id,prompt,eval_name,mistralai/mistral-7b-chat,"
        "mistralai/mixtral-8x7b-chat,gpt-4-1106-preview,"
        "mistralai/mistral-7b-chat|total_cost,mistralai/mixtral-8x7b-chat|total_cost,"
        "gpt-4-1106-preview|total_cost\n"
    )
    body = [
        "0,s1,\"['Add 2 and 3.', 'Answer:']\",math,1.0,1.0,1.0,0.001,0.002,0.03",
        "1,s2,\"['Hard one']\",math,0.0,1.0,1.0,0.001,0.002,0.03",
        "2,s3,\"['Nobody solves this']\",logic,0.0,0.0,0.0,0.001,0.002,0.03",
        "3,s4,\"['Missing cells']\",logic,,1.0,,0.001,0.002,0.03",
        '4,s5,"not a list",logic,1.0,1.0,1.0,0.001,0.002,0.03',
        "5,s6,\"['Bad score']\",logic,yes,1.0,1.0,0.001,0.002,0.03",
    ]
    path.write_text(header + "\n".join(body) + "\n")
    return path


def test_routerbench_layout_keeps_outcomes_costs_and_reports_bad_rows(tmp_path):
    path = _routerbench_csv(tmp_path / "bench.csv")
    assert detect_format(path) is SourceFormat.ROUTERBENCH
    ds = load_dataset([path], default_ladder())
    assert ds.ids == ["s1", "s2", "s3", "s4"]
    assert ds.texts[0] == "Add 2 and 3.\nAnswer:"
    assert ds.groups == ["math", "math", "logic", "logic"]
    np.testing.assert_array_equal(ds.labels, [0, 1, 2, 1])  # unsolved s3 -> top
    assert math.isnan(ds.quality[3, 0]) and math.isnan(ds.sufficient[3, 2])
    np.testing.assert_allclose(ds.cost[0], [0.001, 0.002, 0.03])
    assert [p.reason for p in ds.problems] == [
        "prompt is not a stringified list",
        "unparsable score 'yes' for mistralai/mistral-7b-chat",
    ]
    assert [p.line for p in ds.problems] == [6, 7]
    assert ds.inputs[0].rows == 4 and ds.inputs[0].bad_rows == 2
    assert len(ds.inputs[0].sha256) == 64


def test_unsolved_drop_policy_skips_rows_no_tier_passes(tmp_path):
    path = _routerbench_csv(tmp_path / "bench.csv")
    ladder = Ladder.from_dict({**default_ladder().to_dict(), "unsolved": "drop"})
    ds = load_dataset([path], ladder)
    assert ds.ids == ["s1", "s2", "s4"]
    assert ds.dropped_unsolved == 1


def test_routellm_and_llmrouter_layouts(tmp_path):
    rl = tmp_path / "mmlu_x.csv"
    rl.write_text('prompt,weak,strong\n"Q1\nA. x\nAnswer:",True,True\nQ2,False,True\n')
    ladder = Ladder.from_dict(
        {"tiers": [{"name": "small", "model": "weak"}, {"name": "large", "model": "strong"}]}
    )
    ds = load_dataset([rl], ladder)
    assert detect_format(rl) is SourceFormat.ROUTELLM
    np.testing.assert_array_equal(ds.quality, [[1, 1], [0, 1]])
    assert ds.ids == ["0", "1"] and ds.texts[0].startswith("Q1\nA. x")
    lr = tmp_path / "train.json"
    lr.write_text(
        json.dumps(
            [
                {"question": "q", "scores": {"weak": 0.4, "strong": 0.9}},
                {"question": "", "scores": {"weak": 1, "strong": 1}},
            ]
        )
    )
    ds2 = load_dataset([lr], ladder)
    np.testing.assert_allclose(ds2.quality, [[0.4, 0.9]])
    np.testing.assert_array_equal(ds2.labels, [1])
    assert len(ds2.problems) == 1


def test_a_ladder_model_missing_from_the_data_is_named(tmp_path):
    path = _routerbench_csv(tmp_path / "bench.csv")
    ladder = Ladder.from_dict(
        {
            "tiers": [
                {"name": "a", "model": "mistralai/mistral-7b-chat"},
                {"name": "b", "model": "no-such-model"},
            ]
        }
    )
    with pytest.raises(DataError, match="no-such-model"):
        load_dataset([path], ladder)


def test_nothing_usable_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_dataset([empty], default_ladder())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "tier": "nope"}) + "\n")
    with pytest.raises(DataError, match="no usable rows.*1 bad rows"):
        load_dataset([bad], default_ladder())
    with pytest.raises(DataError, match="not found"):
        load_dataset([tmp_path / "missing.csv"], default_ladder())


def test_read_texts_needs_no_labels_and_keeps_ids(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"id": "x7", "text": "b"}\n{"text": ""}\n{"text": "c"}\n')
    rows, problems = read_texts([path])
    assert [(r.id, r.text) for r in rows] == [("0", "a"), ("x7", "b"), ("3", "c")]
    assert [p.line for p in problems] == [3]


def test_holdout_split_is_fixed_and_about_a_fifth():
    ids = [f"row-{i}" for i in range(2000)]
    held = split_holdout(ids)
    assert 0.17 < held.mean() < 0.23
    np.testing.assert_array_equal(held, split_holdout(list(ids)))
    assert split_holdout(["row-5"])[0] == held[5]


def test_detection_reads_past_a_bad_or_very_long_first_line(tmp_path):
    path = tmp_path / "q.jsonl"
    long_text = "word " * 3000
    path.write_text("{broken\n" + json.dumps({"text": long_text, "tier": "large"}) + "\n")
    assert detect_format(path) is SourceFormat.LABELLED
    ds = load_dataset([path], default_ladder())
    assert len(ds) == 1 and [p.line for p in ds.problems] == [1]
    logs = tmp_path / "logs.jsonl"
    logs.write_text(json.dumps({"request_id": "r1", "text": long_text, "attempts": []}) + "\n")
    assert detect_format(logs) is SourceFormat.LOGS
