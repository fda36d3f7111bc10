"""The journal: one JSON line per (prompt, tier) result, appended as each result arrives.

Lines go out with `os.write` on a descriptor opened for appending at the end of the event-loop
turn in which their results arrived (no Python buffer outlives the turn), so killing the
process loses at most the calls in flight; a line cut short by a crash is skipped on reading.
Rerunning reads the journal back and skips pairs already scored; a pair whose call failed is
retried, and a pair with an answer but no score (a judge that failed) is scored again without
calling the tier. The last record of a pair wins.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.collect.prompts import CollectError

SCHEMA = "rung-collect-journal/1"


@dataclass
class Record:
    id: str
    tier: str
    model: str  # the litellm_model called
    digest: str  # the prompt's content hash: a changed prompt is measured again
    answer: str | None
    score: float | None
    error: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    attempts: int = 0
    judge: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0

    @property
    def scored(self) -> bool:
        return self.score is not None

    @property
    def answered(self) -> bool:
        return self.answer is not None

    @property
    def judge_cost(self) -> float:
        c = self.judge.get("cost_usd") if self.judge else None
        return float(c) if isinstance(c, int | float) and not math.isnan(c) else 0.0

    @property
    def spend(self) -> float:
        own = self.cost_usd if self.cost_usd is not None else 0.0
        return own + self.judge_cost


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


class Journal:
    """Append-only JSONL next to the output table; `records` is the latest per (id, tier)."""

    def __init__(self, path: Path, scorer: str):
        self.path = path
        self.scorer = scorer
        self.records: dict[tuple[str, str], Record] = {}
        self.bad_lines = 0
        self._fd: int | None = None
        self._pending: list[str] = []
        if path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    self.bad_lines += 1  # a line cut short by a kill: its call is redone
                    continue
                if obj.get("schema") == SCHEMA:
                    self._check_header(obj, lineno)
                elif isinstance(obj, dict) and "id" in obj and "tier" in obj:
                    fields = {k: obj[k] for k in Record.__dataclass_fields__ if k in obj}
                    rec = Record(**fields)
                    self.records[(rec.id, rec.tier)] = rec

    def _check_header(self, obj: dict[str, Any], lineno: int) -> None:
        if obj.get("scorer") != self.scorer:
            raise CollectError(
                f"{self.path} was written with --scorer {obj.get('scorer')}, not {self.scorer}; "
                "pass the same scorer to resume, or another --out to start afresh"
            )

    def find(self, prompt_id: str, tier: str, model: str, digest: str) -> Record | None:
        """The usable record of a pair: same model called, same prompt content."""
        rec = self.records.get((prompt_id, tier))
        if rec is None or rec.model != model or rec.digest != digest:
            return None
        return rec

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        # one os.write per record on an O_APPEND descriptor: no Python buffer a kill could lose
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not fresh and not self._ends_with_newline():
            os.write(self._fd, b"\n")  # seal a torn last line so the next record starts clean
        if fresh:
            header = {"schema": SCHEMA, "scorer": self.scorer, "created_at": time.time()}
            self._write(header)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def _write(self, obj: dict[str, Any]) -> None:
        """Results that arrive in the same event-loop turn go out in one `os.write` at the end
        of that turn, before the loop does anything else: a syscall per record hands the GIL
        to LiteLLM's logging thread each time, which cost ~1 ms of CPU per call (measured)."""
        assert self._fd is not None, "open() the journal first"
        self._pending.append(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
        if len(self._pending) > 1:
            return  # a flush is already scheduled for this turn
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop: write at once
            self.flush()

    def flush(self) -> None:
        if self._pending and self._fd is not None:
            os.write(self._fd, "".join(self._pending).encode())
            self._pending.clear()

    def append(self, rec: Record) -> None:
        rec.at = rec.at or time.time()
        rec.cost_usd = _finite(rec.cost_usd)
        rec.latency_ms = _finite(rec.latency_ms)
        if rec.judge:
            rec.judge = {k: _finite(v) if isinstance(v, float) else v for k, v in rec.judge.items()}
        self._write(dict(rec.__dict__))  # flat fields: no deep copy as asdict makes
        self.records[(rec.id, rec.tier)] = rec

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
