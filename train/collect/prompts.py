"""Reading a team's prompts: JSONL or CSV rows with `text` or `messages`, optional `id`,
`expected` and `family`. Ids must be stable across runs (the journal is keyed on them), so a
row without an `id` gets a hash of its content, never its position."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from serve.model.errors import RungError
from serve.model.text import text_from_messages
from train.data.files import expand_paths, json_lines


class CollectError(RungError):
    """`rung collect` cannot run on these inputs; the message says what and how to fix it."""


@dataclass(frozen=True)
class Prompt:
    id: str
    messages: tuple[dict[str, Any], ...]
    text: str  # what rung classifies: the last user turn, as the server reads a request
    expected: str | None = None
    family: str = ""
    source: str = field(default="", compare=False)

    @cached_property
    def digest(self) -> str:
        """Content hash: a journal entry is reused only for the very same prompt."""
        return _digest(list(self.messages))

    def as_dict(self) -> dict[str, Any]:
        """What a team's own scorer receives."""
        return {
            "id": self.id,
            "text": self.text,
            "messages": [dict(m) for m in self.messages],
            "expected": self.expected,
            "family": self.family,
        }


def _digest(messages: list[dict[str, Any]]) -> str:
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            return [(reader.line_num, dict(rec)) for rec in reader]
    if path.suffix != ".jsonl":
        raise CollectError(f"{path}: prompts must be .jsonl or .csv files")
    out = []
    for item in json_lines(path):
        if not isinstance(item, tuple):
            raise CollectError(f"{item}; fix the line or remove it")
        line, obj = item
        if not isinstance(obj, dict):
            raise CollectError(f"{path}:{line}: line is not a JSON object")
        out.append((line, obj))
    return out


def _messages(obj: dict[str, Any], where: str) -> list[dict[str, Any]]:
    raw = obj.get("messages")
    if isinstance(raw, str) and raw.strip().startswith("["):  # a CSV cell holding JSON
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise CollectError(f"{where}: messages is not a JSON list") from None
    if raw not in (None, ""):
        if not isinstance(raw, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in raw
        ):
            raise CollectError(f"{where}: messages must be a list of {{role, content}} objects")
        return [dict(m) for m in raw]
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise CollectError(f"{where}: needs a non-empty `text` or `messages`")
    return [{"role": "user", "content": text}]


def _prompt(obj: dict[str, Any], where: str, path: Path) -> Prompt:
    messages = _messages(obj, where)
    text = text_from_messages(messages)
    if not text.strip():
        raise CollectError(f"{where}: messages hold no user text")
    expected = obj.get("expected")
    if expected is not None and not isinstance(expected, str):
        expected = json.dumps(expected) if isinstance(expected, dict | list) else str(expected)
    rid = obj.get("id")
    rid = str(rid) if rid not in (None, "") else _digest(messages)
    family = str(obj.get("family") or path.stem)
    return Prompt(rid, tuple(messages), text, expected or None, family, f"{where}")


def read_prompts(paths: list[str | Path]) -> list[Prompt]:
    """Every prompt of every file, in order; bad input stops with the file and line."""
    try:
        files = expand_paths(paths)
    except RungError as exc:
        raise CollectError(str(exc)) from None
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for path in files:
        for line, obj in _records(path):
            where = f"{path}:{line}"
            p = _prompt(obj, where, path)
            if p.id in seen:
                raise CollectError(
                    f"{where}: id {p.id!r} is also used at {seen[p.id]}; ids must be unique "
                    "(the journal and the outcome table are keyed on them)"
                )
            seen[p.id] = where
            prompts.append(p)
    if not prompts:
        raise CollectError(f"no prompts in {[str(p) for p in paths]}")
    return prompts
