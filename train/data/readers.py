"""Readers for every source layout: each yields `RawRow`s or `RowProblem`s (file, line, reason).

`train.data.load.READERS` maps each `SourceFormat` to its reader; escalation logs live in
`train.data.logs`.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve.model.ladder import Ladder, LadderError
from serve.model.text import text_from_messages
from train.data.files import json_lines
from train.data.types import DataError, RawRow, RowProblem


def _nan_row(ladder: Ladder) -> list[float]:
    return [math.nan] * len(ladder)


def _labelled_quality(ladder: Ladder, tier: Any) -> list[float]:
    index = ladder.index(str(tier))
    return [1.0 if t >= index else 0.0 for t in range(len(ladder))]


def _labelled_row(
    obj: dict[str, Any], ladder: Ladder, path: Path, line: int, default_id: str
) -> RawRow | RowProblem:
    text = obj.get("text")
    if text is None and isinstance(obj.get("messages"), list):
        text = text_from_messages(obj["messages"])
    if not isinstance(text, str) or not text.strip():
        return RowProblem(str(path), line, "missing or empty text")
    if obj.get("tier") in (None, ""):
        return RowProblem(str(path), line, "missing tier")
    try:
        quality = _labelled_quality(ladder, obj["tier"])
        weight = float(obj.get("weight") or 1.0)
    except LadderError as exc:
        return RowProblem(str(path), line, str(exc))
    except (TypeError, ValueError):
        return RowProblem(str(path), line, f"weight {obj.get('weight')!r} is not a number")
    if not weight > 0:
        return RowProblem(str(path), line, f"weight must be > 0, got {weight}")
    rid = str(obj.get("sample_id") or obj.get("id") or default_id)
    return RawRow(
        rid, text, quality, _nan_row(ladder), str(obj.get("family") or path.stem), weight, line=line
    )


def _labelled_records(path: Path) -> Iterator[tuple[int, int, dict[str, Any]] | RowProblem]:
    """(line, 0-based row index, record) for JSONL or CSV files of the labelled layout."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            records = csv.DictReader(fh)
            for i, rec in enumerate(records):
                yield records.line_num, i, rec
        return
    for index, item in enumerate(json_lines(path)):
        if isinstance(item, RowProblem):
            yield item
        elif isinstance(item[1], dict):
            yield item[0], index, item[1]
        else:
            yield RowProblem(str(path), item[0], "line is not a JSON object")


def read_labelled(path: Path, ladder: Ladder) -> Iterator[RawRow | RowProblem]:
    for item in _labelled_records(path):
        if isinstance(item, RowProblem):
            yield item
        else:
            line, index, obj = item
            yield _labelled_row(obj, ladder, path, line, str(index))


def _score(value: Any) -> float:
    """Scores arrive as 0.0/1.0, 'True'/'False', or blank (unknown)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    s = str(value).strip()
    if s == "":
        return math.nan
    if s.lower() in ("true", "false"):
        return 1.0 if s.lower() == "true" else 0.0
    v = float(s)  # ValueError is reported by the caller
    if math.isnan(v) or not -1e-9 <= v <= 1.0 + 1e-9:
        raise ValueError(f"score {s!r} outside [0, 1]")
    return min(max(v, 0.0), 1.0)


def _require_columns(path: Path, ladder: Ladder, available: list[str]) -> None:
    missing = [m for m in ladder.model_columns() if m not in available]
    if missing:
        models = [c for c in available if "|" not in c][:20]
        raise DataError(
            f"{path}: the ladder names model(s) {missing} that the data lacks; "
            f"columns include {models}"
        )


def _prompt_text(raw: str) -> str:
    """RouterBench stores the prompt as a stringified Python list of strings."""
    value = ast.literal_eval(raw)
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def _outcome_row(
    rec: dict[str, Any], ladder: Ladder, path: Path, line: int, rid: str, text: Any, group: str
) -> RawRow | RowProblem:
    if not isinstance(text, str) or not text.strip():
        return RowProblem(str(path), line, "missing or empty prompt")
    quality, cost = [], []
    for t in ladder.tiers:
        try:
            quality.append(_score(rec.get(t.model)))
        except ValueError:
            return RowProblem(
                str(path), line, f"unparsable score {rec.get(t.model)!r} for {t.model}"
            )
        raw_cost = rec.get(f"{t.model}|total_cost")
        try:
            cost.append(float(raw_cost) if raw_cost not in (None, "") else math.nan)
        except ValueError:
            cost.append(math.nan)
    if all(math.isnan(q) for q in quality):
        return RowProblem(str(path), line, "no score for any tier")
    return RawRow(rid, text, quality, cost, group, line=line)


def read_routerbench(path: Path, ladder: Ladder) -> Iterator[RawRow | RowProblem]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        _require_columns(path, ladder, list(rows.fieldnames or []))
        for i, rec in enumerate(rows):
            try:
                text = _prompt_text(rec.get("prompt") or "")
            except (ValueError, SyntaxError):
                yield RowProblem(str(path), rows.line_num, "prompt is not a stringified list")
                continue
            rid = rec.get("sample_id") or str(i)
            yield _outcome_row(
                rec, ladder, path, rows.line_num, rid, text, rec.get("eval_name") or ""
            )


def read_routellm(path: Path, ladder: Ladder) -> Iterator[RawRow | RowProblem]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        _require_columns(path, ladder, list(rows.fieldnames or []))
        for i, rec in enumerate(rows):
            line = rows.line_num
            yield _outcome_row(
                rec, ladder, path, line, rec.get("id") or str(i), rec.get("prompt"), path.stem
            )


def read_llmrouter(path: Path, ladder: Ladder) -> Iterator[RawRow | RowProblem]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of {{question, scores}} objects")
    models = sorted({m for it in items if isinstance(it, dict) for m in (it.get("scores") or {})})
    _require_columns(path, ladder, models)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("scores"), dict):
            yield RowProblem(str(path), i, "item lacks a scores object")
            continue
        group = str(item.get("cluster_id", ""))
        rid = str(item.get("id", i))
        yield _outcome_row(item["scores"], ladder, path, i, rid, item.get("question"), group)


def unlabelled_rows(path: Path) -> Iterator[tuple[str, str] | RowProblem]:
    """(id, text) of labelled-layout files read for their text only: a missing or unknown tier
    is fine. Yields tuples, not RawRows: this is `rung predict`'s per-row path."""
    for item in _labelled_records(path):
        if isinstance(item, RowProblem):
            yield item
            continue
        line, index, obj = item
        text = obj.get("text")
        if text is None and isinstance(obj.get("messages"), list):
            text = text_from_messages(obj["messages"])
        if not isinstance(text, str) or not text or text.isspace():
            yield RowProblem(str(path), line, "missing or empty text")
            continue
        yield str(obj.get("sample_id") or obj.get("id") or index), text
