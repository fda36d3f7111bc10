"""Scorers: an answer (and the prompt's `expected`) to a score in 0..1, or None (unknown).

Choose one with `--scorer`: exact, choice, numeric, regex, contains, json, judge, or
python:module:function. The ladder's `pass_mark` turns scores into sufficiency, as everywhere.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from train.collect.prompts import CollectError, Prompt


class ScorerKind(str, Enum):
    EXACT = "exact"
    CHOICE = "choice"
    NUMERIC = "numeric"
    REGEX = "regex"
    CONTAINS = "contains"
    JSON = "json"
    JUDGE = "judge"
    PYTHON = "python"


NEEDS_EXPECTED = {
    ScorerKind.EXACT,
    ScorerKind.CHOICE,
    ScorerKind.NUMERIC,
    ScorerKind.REGEX,
    ScorerKind.CONTAINS,
}


@dataclass
class Score:
    value: float | None  # None: unknown (the scorer could not decide)
    error: str = ""
    judge: dict[str, Any] = field(default_factory=dict)  # the judge's own call, counted apart


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def score_exact(answer: str, expected: str) -> float:
    return float(normalise(answer) == normalise(expected))


_CHOICE_PATTERNS = (
    r"(?i:answer(?:\s+is)?)\s*:?\s*\(?([A-E])\b",  # "The answer is (B)", "Answer: C"
    r"\(([A-E])\)",  # "(D)"
    r"^\s*([A-E])\s*[.):]",  # "B." at the start of a line
    r"\b([A-E])\b",  # any standalone letter, first one
)


def choice_letter(text: str) -> str | None:
    """The first A-E option letter: explicit forms ("answer is B", "(B)", "B.") first."""
    for pattern in _CHOICE_PATTERNS:
        m = re.search(pattern, text, flags=re.MULTILINE)
        if m:
            return m.group(1).upper()
    return None


def score_choice(answer: str, expected: str) -> float:
    want = choice_letter(expected.strip()) or expected.strip().upper()[:1]
    return float(choice_letter(answer) == want)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def score_numeric(answer: str, expected: str, rel_tol: float = 1e-6) -> float:
    got, want = last_number(answer), last_number(expected)
    if want is None:
        raise ValueError(f"expected {expected!r} holds no number")
    return float(got is not None and math.isclose(got, want, rel_tol=rel_tol, abs_tol=1e-9))


def score_regex(answer: str, pattern: str) -> float:
    return float(re.search(pattern, answer, flags=re.S) is not None)


def score_contains(answer: str, expected: str) -> float:
    return float(normalise(expected) in normalise(answer))


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_json_answer(answer: str) -> Any:
    text = answer.strip()
    m = _FENCE.match(text)
    return json.loads(m.group(1) if m else text)


def score_json(answer: str, validator: Any | None) -> float:
    try:
        value = parse_json_answer(answer)
    except json.JSONDecodeError:
        return 0.0
    if validator is not None and next(iter(validator.iter_errors(value)), None) is not None:
        return 0.0
    return 1.0


def load_schema_validator(path: Path) -> Any:
    try:
        import jsonschema
    except ImportError:
        raise CollectError("--json-schema needs the jsonschema package") from None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CollectError(f"JSON Schema file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise CollectError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise CollectError(f"{path}: not a valid JSON Schema: {exc.message}") from None
    return cls(schema)


def load_python_scorer(spec: str) -> Callable[..., Any]:
    """`python:module:function`, importable from the working directory too (as pytest does).
    The function receives (answer, expected, prompt) and returns a bool or a float in 0..1,
    or None for unknown; it may be async."""
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts[1:]):
        raise CollectError(f"--scorer {spec!r}: write python:module:function")
    _, module_name, func_name = parts
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CollectError(f"--scorer {spec!r}: cannot import {module_name}: {exc}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise CollectError(f"--scorer {spec!r}: {module_name} has no function {func_name}")
    return fn


def as_score(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    v = float(value)
    if math.isnan(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"score {value!r} outside 0..1")
    return v


@dataclass
class Scorer:
    """A configured scorer; `await scorer(prompt, answer)` gives a `Score`."""

    kind: ScorerKind
    spec: str  # as given on the command line, recorded in the journal
    rel_tol: float = 1e-6
    validator: Any | None = None
    function: Callable[..., Any] | None = None
    judge: Any | None = None  # train.collect.judge.Judge
    schema_digest: str = ""  # of --json-schema, so a changed schema is not resumed on

    @property
    def signature(self) -> str:
        """What the journal records: resuming with other scoring settings is refused."""
        extra = ""
        if self.kind is ScorerKind.NUMERIC:
            extra = f" --tolerance {self.rel_tol:g}"
        elif self.schema_digest:
            extra = f" --json-schema sha256:{self.schema_digest}"
        return self.spec + extra

    @property
    def needs_expected(self) -> bool:
        return self.kind in NEEDS_EXPECTED

    async def __call__(self, prompt: Prompt, answer: str) -> Score:
        try:
            return await self._score(prompt, answer)
        except Exception as exc:  # a scorer's failure is an unknown, never a crash or a 0
            return Score(None, f"scorer {self.spec}: {type(exc).__name__}: {exc}"[:300])

    async def _score(self, prompt: Prompt, answer: str) -> Score:
        expected = prompt.expected
        if self.needs_expected and expected is None:
            return Score(None, f"scorer {self.spec} needs `expected`")
        exp = expected or ""
        if self.kind is ScorerKind.EXACT:
            return Score(score_exact(answer, exp))
        if self.kind is ScorerKind.CHOICE:
            return Score(score_choice(answer, exp))
        if self.kind is ScorerKind.NUMERIC:
            return Score(score_numeric(answer, exp, self.rel_tol))
        if self.kind is ScorerKind.REGEX:
            return Score(score_regex(answer, exp))
        if self.kind is ScorerKind.CONTAINS:
            return Score(score_contains(answer, exp))
        if self.kind is ScorerKind.JSON:
            return Score(score_json(answer, self.validator))
        if self.kind is ScorerKind.JUDGE:
            assert self.judge is not None
            return await self.judge.grade(prompt, answer)
        assert self.function is not None
        value = self.function(answer, expected, prompt.as_dict())
        if inspect.isawaitable(value):
            value = await value
        return Score(as_score(value))


def build_scorer(
    spec: str,
    judge: Any | None = None,
    json_schema: Path | None = None,
    rel_tol: float = 1e-6,
) -> Scorer:
    """Validate a `--scorer` value up front: a bad one is a one-line error before any call."""
    if spec.startswith("python:"):
        return Scorer(ScorerKind.PYTHON, spec, function=load_python_scorer(spec))
    try:
        kind = ScorerKind(spec)
    except ValueError:
        names = ", ".join(k.value for k in ScorerKind if k is not ScorerKind.PYTHON)
        raise CollectError(
            f"unknown --scorer {spec!r}: use one of {names}, or python:module:function"
        ) from None
    if kind is ScorerKind.PYTHON:
        raise CollectError("--scorer python needs a target: python:module:function")
    if json_schema is not None and kind is not ScorerKind.JSON:
        raise CollectError("--json-schema applies to --scorer json only")
    if kind is ScorerKind.JUDGE and judge is None:
        raise CollectError(
            "--scorer judge needs a [judge] table in the ladder with the grading model, "
            'e.g. [judge] litellm_model = "openai/gpt-4o"'
        )
    if not rel_tol >= 0:
        raise CollectError("--tolerance must be >= 0")
    validator = load_schema_validator(json_schema) if json_schema else None
    digest = hashlib.sha256(json_schema.read_bytes()).hexdigest()[:12] if json_schema else ""
    return Scorer(kind, spec, rel_tol, validator, judge=judge, schema_digest=digest)
