"""Prompts only, from any supported layout: what `rung predict` needs.

Predicting reads the text and an id per row and nothing else. Outcome columns (RouterBench
model scores, RouteLLM and LLMRouter scores, log attempts, labelled tiers) are ignored, so a
file whose models are not the bundle's ladder, or that has no outcomes at all, still routes.
Only commands that score (`train`, `eval`, `retrain`, `simulate`) read outcomes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from serve.model.text import text_from_messages
from train.data.files import json_lines
from train.data.readers import _prompt_text, unlabelled_rows
from train.data.types import DataError, RowProblem, SourceFormat

Prompt = tuple[str, str]  # (row id, text)
PromptReader = Callable[[Path], Iterator[Prompt | RowProblem]]


def _checked(path: Path, line: int, rid: Any, text: Any) -> Prompt | RowProblem:
    if not isinstance(text, str) or not text.strip():
        return RowProblem(str(path), line, "missing or empty prompt")
    return str(rid), text


def labelled_prompts(path: Path) -> Iterator[Prompt | RowProblem]:
    return unlabelled_rows(path)


def _csv_prompts(path: Path, text_of: Callable[[dict[str, Any]], Any], id_key: str) -> Iterator:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        if "prompt" not in (rows.fieldnames or []):
            raise DataError(f"{path}: no 'prompt' column; columns are {rows.fieldnames[:10]}")
        for i, rec in enumerate(rows):
            try:
                text = text_of(rec)
            except (ValueError, SyntaxError):
                yield RowProblem(str(path), rows.line_num, "prompt is not a stringified list")
                continue
            yield _checked(path, rows.line_num, rec.get(id_key) or i, text)


def routerbench_prompts(path: Path) -> Iterator[Prompt | RowProblem]:
    return _csv_prompts(path, lambda rec: _prompt_text(rec.get("prompt") or ""), "sample_id")


def routellm_prompts(path: Path) -> Iterator[Prompt | RowProblem]:
    return _csv_prompts(path, lambda rec: rec.get("prompt"), "id")


def llmrouter_prompts(path: Path) -> Iterator[Prompt | RowProblem]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of {{question, ...}} objects")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            yield RowProblem(str(path), i, "item is not a JSON object")
            continue
        yield _checked(path, i, item.get("id", i), item.get("question"))


def _log_text(obj: dict[str, Any]) -> Any:
    text = obj.get("text")
    if text is None and isinstance(obj.get("messages"), list):
        text = text_from_messages(obj["messages"])
    return text


def log_prompts(path: Path) -> Iterator[Prompt | RowProblem]:
    """One prompt per request: a request line, or the first attempt line carrying text."""
    seen: set[str] = set()
    for item in json_lines(path):
        if isinstance(item, RowProblem):
            yield item
            continue
        line, obj = item
        rid = obj.get("request_id") if isinstance(obj, dict) else None
        if not isinstance(rid, str | int) or isinstance(rid, bool) or str(rid).strip() == "":
            yield RowProblem(str(path), line, "missing request_id")
            continue
        text = _log_text(obj)
        if str(rid) in seen or (text is None and "attempts" not in obj):
            continue  # a later attempt line of a request already read, or one without text
        seen.add(str(rid))
        yield _checked(path, line, rid, text)


PROMPT_READERS: dict[SourceFormat, PromptReader] = {
    SourceFormat.LABELLED: labelled_prompts,
    SourceFormat.ROUTERBENCH: routerbench_prompts,
    SourceFormat.ROUTELLM: routellm_prompts,
    SourceFormat.LLMROUTER: llmrouter_prompts,
    SourceFormat.LOGS: log_prompts,
}
