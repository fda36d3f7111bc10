"""Finding data files and telling their layout apart; the JSONL line reader readers share."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from train.data.types import DataError, RowProblem, SourceFormat

csv.field_size_limit(1 << 30)
DATA_SUFFIXES = (".jsonl", ".csv", ".json")


def expand_paths(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in DATA_SUFFIXES and f.is_file())
            if not found:
                raise DataError(f"{p}: folder holds no .jsonl, .csv or .json files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"data file not found: {p}")
    return out


def json_lines(path: Path) -> Iterator[tuple[int, Any] | RowProblem]:
    """(line number, parsed value) for every non-blank JSONL line; a RowProblem for a line
    that is not JSON, so readers report it with its line and go on."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.isspace() or not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowProblem(str(path), lineno, f"invalid JSON: {exc.msg}")
                continue
            if "\\u" in line and _SURROGATE_ESCAPE.search(line) and not _encodable(value):
                yield RowProblem(
                    str(path), lineno, "a string holds a lone surrogate (\\ud800-\\udfff)"
                )
                continue
            yield lineno, value


# An escaped surrogate (U+D800-U+DFFF): a pair (an emoji) is fine, a lone half is not; only
# lines holding one are checked in full (re-encoding every line with any escape: 14 us a row).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(value: Any) -> bool:
    """Python's json accepts escaped lone surrogates, which no tokenizer (or UTF-8) can take."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def detect_format(path: Path) -> SourceFormat:
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096)
    if not head.strip():
        raise DataError(f"{path}: file is empty")
    if path.suffix == ".csv":
        header = next(csv.reader([head.splitlines()[0]]))
        if "text" in header and "tier" in header:
            return SourceFormat.LABELLED
        if "prompt" in header and ("sample_id" in header or "eval_name" in header):
            return SourceFormat.ROUTERBENCH
        if "prompt" in header:
            return SourceFormat.ROUTELLM
        raise DataError(f"{path}: CSV header {header[:6]} is not a known layout")
    if path.suffix == ".json" or head.lstrip().startswith("["):
        return SourceFormat.LLMROUTER
    obj = _first_json_object(path)
    if obj is None:
        raise DataError(f"{path}: none of the first lines is a JSON object; pass --format")
    if "attempts" in obj or "request_id" in obj:
        return SourceFormat.LOGS
    return SourceFormat.LABELLED


def _first_json_object(path: Path, lines: int = 50) -> dict[str, Any] | None:
    """The first parsable object line: a bad first line is the reader's to report, not a
    reason to misjudge the whole file (and lines may be longer than any fixed peek)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for _, line in zip(range(lines), fh, strict=False):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None
