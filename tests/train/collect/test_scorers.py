"""Every scorer on hand-made answers, the judge through the fake server, a team's own."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from serve.model.ladder import Ladder
from tests.support.fake_llm import Rule
from tests.train.collect.helpers import write_ladder
from train.collect.judge import GRADE_SCORES, JUDGE_RUBRIC, Judge, parse_grade
from train.collect.prompts import CollectError, Prompt
from train.collect.scorers import build_scorer, choice_letter, last_number


def prompt(expected: str | None = None, text: str = "question") -> Prompt:
    return Prompt("p1", ({"role": "user", "content": text},), text, expected, "fam")


def score(spec: str, answer: str, expected: str | None = None, **kw) -> float | None:
    scorer = build_scorer(spec, **kw)
    return asyncio.run(scorer(prompt(expected), answer)).value


@pytest.mark.parametrize(
    ("answer", "expected", "want"),
    [
        ("  Paris ", "paris", 1.0),
        ("The  capital\nis Paris", "the capital is paris", 1.0),
        ("Paris.", "Paris", 0.0),  # case and whitespace only
    ],
)
def test_exact(answer, expected, want):
    assert score("exact", answer, expected) == want


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("The answer is (C).", "C"),
        ("Answer: B", "B"),
        ("A is tempting, but (D) is right", "D"),
        ("B. Because of gravity", "B"),
        ("I think E", "E"),
        ("none of them", None),
    ],
)
def test_choice_letter(answer, letter):
    assert choice_letter(answer) == letter


def test_choice_scores_against_the_expected_letter():
    assert score("choice", "The answer is (C).", "C") == 1.0
    assert score("choice", "The answer is (C).", "(B)") == 0.0


@pytest.mark.parametrize(
    ("answer", "expected", "want"),
    [
        ("so 12 + 30 = 42", "42", 1.0),
        ("total: 1,234.50 USD", "#### 1234.5", 1.0),
        ("it is 41.99999999", "42", 1.0),
        ("roughly 41.9", "42", 0.0),
        ("no idea", "42", 0.0),
        ("-3", "-3.0", 1.0),
    ],
)
def test_numeric(answer, expected, want):
    assert score("numeric", answer, expected) == want


def test_numeric_tolerance_and_expected_without_a_number():
    assert score("numeric", "41.9", "42", rel_tol=0.01) == 1.0
    assert last_number("a 1e3 b") == 1000.0
    scorer = build_scorer("numeric")
    res = asyncio.run(scorer(prompt("forty-two"), "42"))
    assert res.value is None and "holds no number" in res.error


def test_regex_and_contains():
    assert score("regex", "order #A-1234 shipped", r"#A-\d{4}") == 1.0
    assert score("regex", "order shipped", r"#A-\d{4}") == 0.0
    assert score("contains", "Sure! The CODE is  XJ 9.", "code is xj 9") == 1.0
    assert score("contains", "no code", "code is xj 9") == 0.0


def test_scorers_that_need_expected_say_so_instead_of_scoring_zero():
    res = asyncio.run(build_scorer("exact")(prompt(None), "x"))
    assert res.value is None and "needs `expected`" in res.error


def test_json_parses_fenced_answers_and_validates_a_schema(tmp_path):
    assert score("json", '{"a": 1}') == 1.0
    assert score("json", '```json\n{"a": 1}\n```') == 1.0
    assert score("json", "{a: 1}") == 0.0
    schema = tmp_path / "s.json"
    schema.write_text(
        json.dumps({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}})
    )
    assert score("json", '{"a": 1}', json_schema=schema) == 1.0
    assert score("json", '{"a": "one"}', json_schema=schema) == 0.0
    assert score("json", '{"b": 1}', json_schema=schema) == 0.0
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": 12}')
    with pytest.raises(CollectError, match="not a valid JSON Schema"):
        build_scorer("json", json_schema=bad)


def test_python_scorer_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "team_scorers.py").write_text(
        "def length_ok(answer, expected, prompt):\n"
        "    return len(answer) <= int(expected) and prompt['family'] == 'fam'\n"
        "async def half(answer, expected, prompt):\n"
        "    return 0.5\n"
        "def broken(answer, expected, prompt):\n"
        "    return 7\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert score("python:team_scorers:length_ok", "short", "10") == 1.0
    assert score("python:team_scorers:length_ok", "far too long an answer", "10") == 0.0
    assert score("python:team_scorers:half", "x") == 0.5
    res = asyncio.run(build_scorer("python:team_scorers:broken")(prompt(), "x"))
    assert res.value is None and "outside 0..1" in res.error
    with pytest.raises(CollectError, match="has no function nope"):
        build_scorer("python:team_scorers:nope")
    with pytest.raises(CollectError, match="cannot import"):
        build_scorer("python:no_such_module_here:f")
    with pytest.raises(CollectError, match="python:module:function"):
        build_scorer("python:team_scorers")


def test_unknown_scorer_and_judge_without_a_judge_model():
    with pytest.raises(CollectError, match="unknown --scorer 'fuzzy'"):
        build_scorer("fuzzy")
    with pytest.raises(CollectError, match=r"\[judge\] table"):
        build_scorer("judge")


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        ("Matches the reference.\nGRADE: 5", 5),
        ("grade: 2", 2),
        ("GRADE: **4**", 4),
        ("First GRADE: 1, on reflection GRADE: 3", 3),
        ("GRADE: 9", None),
        ("looks fine", None),
    ],
)
def test_parse_grade(reply, grade):
    assert parse_grade(reply) == grade


def test_judge_grades_through_the_fake_with_the_rubric_and_counts_its_cost(tmp_path, llm):
    ladder = Ladder.from_toml(write_ladder(tmp_path / "l.toml", llm.base_url, judge=True))
    llm.rules += [
        Rule(model="judge", contains="forty", answer="Wrong number.\nGRADE: 1"),
        Rule(model="judge", answer="Correct and complete.\nGRADE: 5"),
    ]
    assert ladder.judge is not None
    scorer = build_scorer("judge", judge=Judge(ladder.judge))
    good = asyncio.run(scorer(prompt("42", "what is 6 x 7"), "42"))
    bad = asyncio.run(scorer(prompt("42", "what is 6 x 7"), "forty"))
    assert good.value == GRADE_SCORES[5] == 1.0 and bad.value == 0.0
    call = llm.calls_for("judge")[0]
    assert call.messages[0] == {"role": "system", "content": JUDGE_RUBRIC}
    user = call.messages[1]["content"]
    assert "what is 6 x 7" in user and "<reference_answer>\n42" in user
    assert good.judge["input_tokens"] == call.prompt_tokens
    want = (call.prompt_tokens * 5.0 + call.completion_tokens * 15.0) / 1e6
    assert good.judge["cost_usd"] == pytest.approx(want)


def test_judge_without_a_grade_line_is_unknown(tmp_path, llm):
    ladder = Ladder.from_toml(write_ladder(tmp_path / "l.toml", llm.base_url, judge=True))
    llm.rules.append(Rule(model="judge", answer="It is fine I guess"))
    assert ladder.judge is not None
    res = asyncio.run(build_scorer("judge", judge=Judge(ladder.judge))(prompt(), "x"))
    assert res.value is None and "GRADE" in res.error and res.judge["cost_usd"] > 0


def test_the_docs_show_the_rubric_the_judge_uses():
    from tests.support.paths import ROOT

    assert JUDGE_RUBRIC in (ROOT / "docs" / "collect.md").read_text(encoding="utf-8")
