"""The data layer: every source becomes the same table of per-tier outcomes.

A source reader yields `RawRow`s (text, per-tier quality and cost, NaN where unknown) or
`RowProblem`s (file, line, reason). `load_dataset` validates, applies the ladder's policy and
returns a `Dataset`. New sources (escalation logs) register a reader in `READERS`.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from serve.errors import RungError
from serve.ladder import Ladder, LadderError, UnsolvedPolicy
from serve.text import text_from_messages

csv.field_size_limit(1 << 30)
DATA_SUFFIXES = (".jsonl", ".csv", ".json")


class DataError(RungError):
    """Data that cannot be used at all; the message says what and where."""


class SourceFormat(str, Enum):
    LABELLED = "labelled"  # text + tier
    ROUTERBENCH = "routerbench"  # stringified prompt list, per-model score and cost columns
    ROUTELLM = "routellm"  # prompt + True/False per model
    LLMROUTER = "llmrouter"  # JSON list of {question, scores}
    LOGS = "logs"  # gateway escalation logs


@dataclass(frozen=True)
class RowProblem:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class RawRow:
    id: str
    text: str
    quality: list[float]  # per tier, 0..1, NaN = unknown
    cost: list[float]  # per tier, USD, NaN = unknown
    group: str = ""
    weight: float = 1.0
    time: str = ""
    line: int = 0


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str
    format: str
    rows: int
    bad_rows: int
    abs_path: str = ""  # where it was, resolved: `path` is as given, relative to the cwd


@dataclass
class Dataset:
    """Rows with per-tier outcomes. `quality[i, t]` is tier t's score on row i (NaN unknown)."""

    ladder: Ladder
    ids: list[str]
    texts: list[str]
    quality: np.ndarray
    cost: np.ndarray
    groups: list[str]
    sources: list[str]
    weights: np.ndarray
    times: list[str]
    inputs: list[InputFile] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    dropped_unsolved: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def sufficient(self) -> np.ndarray:
        """1.0 / 0.0 / NaN: does tier t's answer pass the ladder's mark on row i."""
        with np.errstate(invalid="ignore"):
            out = (self.quality >= self.ladder.pass_mark).astype(float)
        out[np.isnan(self.quality)] = np.nan
        return out

    @property
    def labels(self) -> np.ndarray:
        """Cheapest known-sufficient tier; rows no tier passes get the top tier (policy `top`)."""
        suff = np.nan_to_num(self.sufficient, nan=0.0) > 0
        suff[:, -1] |= ~suff.any(axis=1)
        return suff.argmax(axis=1)

    def subset(self, mask: np.ndarray) -> Dataset:
        idx = np.flatnonzero(mask)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return Dataset(
            self.ladder,
            pick(self.ids),
            pick(self.texts),
            self.quality[idx],
            self.cost[idx],
            pick(self.groups),
            pick(self.sources),
            self.weights[idx],
            pick(self.times),
            self.inputs,
            self.problems,
            self.dropped_unsolved,
        )

    def rows_per_tier(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.ladder))
        return {n: int(c) for n, c in zip(self.ladder.names, counts, strict=True)}


# ---------------------------------------------------------------- format detection


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


# ---------------------------------------------------------------- readers

Reader = Callable[[Path, Ladder], Iterator[RawRow | RowProblem]]
READERS: dict[SourceFormat, Reader] = {}


def reader(fmt: SourceFormat) -> Callable[[Reader], Reader]:
    def register(fn: Reader) -> Reader:
        READERS[fmt] = fn
        return fn

    return register


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
    with open(path, encoding="utf-8") as fh:
        index = 0
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowProblem(str(path), lineno, f"invalid JSON: {exc.msg}")
            else:
                if isinstance(obj, dict):
                    yield lineno, index, obj
                else:
                    yield RowProblem(str(path), lineno, "line is not a JSON object")
            index += 1


@reader(SourceFormat.LABELLED)
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


@reader(SourceFormat.ROUTERBENCH)
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


@reader(SourceFormat.ROUTELLM)
def read_routellm(path: Path, ladder: Ladder) -> Iterator[RawRow | RowProblem]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh)
        _require_columns(path, ladder, list(rows.fieldnames or []))
        for i, rec in enumerate(rows):
            line = rows.line_num
            yield _outcome_row(
                rec, ladder, path, line, rec.get("id") or str(i), rec.get("prompt"), path.stem
            )


@reader(SourceFormat.LLMROUTER)
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


# ---------------------------------------------------------------- loading


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def load_dataset(
    paths: list[str | Path],
    ladder: Ladder,
    fmt: SourceFormat | None = None,
    apply_policy: bool = True,
) -> Dataset:
    """Read every file, keep good rows, count and report bad ones; refuse if none is usable."""
    rows: list[RawRow] = []
    sources: list[str] = []
    problems: list[RowProblem] = []
    inputs: list[InputFile] = []
    for path in expand_paths(paths):
        kind = fmt or detect_format(path)
        good_before, bad_before = len(rows), len(problems)
        for item in READERS[kind](path, ladder):
            if isinstance(item, RowProblem):
                problems.append(item)
            else:
                rows.append(item)
                sources.append(str(path))
        inputs.append(
            InputFile(
                str(path),
                _sha256(path),
                kind.value,
                len(rows) - good_before,
                len(problems) - bad_before,
                str(path.resolve()),
            )
        )
    return _assemble(rows, sources, problems, inputs, ladder, apply_policy)


def _assemble(
    rows: list[RawRow],
    sources: list[str],
    problems: list[RowProblem],
    inputs: list[InputFile],
    ladder: Ladder,
    apply_policy: bool,
) -> Dataset:
    if not rows:
        detail = "; ".join(map(str, problems[:5]))
        raise DataError(
            f"no usable rows in {[i.path for i in inputs]}"
            + (f" ({len(problems)} bad rows, e.g. {detail})" if problems else "")
        )
    quality = np.array([r.quality for r in rows], dtype=float)
    ds = Dataset(
        ladder,
        [r.id for r in rows],
        [r.text for r in rows],
        quality,
        np.array([r.cost for r in rows], dtype=float),
        [r.group for r in rows],
        sources,
        np.array([r.weight for r in rows], dtype=float),
        [r.time for r in rows],
        inputs,
        problems,
    )
    if apply_policy and ladder.unsolved is UnsolvedPolicy.DROP:
        solved = (np.nan_to_num(ds.sufficient, nan=0.0) > 0).any(axis=1)
        dropped = int((~solved).sum())
        ds = ds.subset(solved)
        ds.dropped_unsolved = dropped
        if not len(ds):
            raise DataError("every row is unsolved and the ladder's policy is 'drop'")
    return ds


def split_holdout(ids: list[str], folds: int = 5) -> np.ndarray:
    """True for held-out rows: a fixed hash of the id, so the split never drifts."""
    return np.array([int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) % folds == 0 for i in ids])


@dataclass(frozen=True)
class TextRow:
    source: str
    id: str
    text: str


def read_texts(
    paths: list[str | Path], ladder: Ladder, fmt: SourceFormat | None = None
) -> tuple[list[TextRow], list[RowProblem]]:
    """Texts to route, with their ids; labels are optional here (prediction, not training)."""
    rows: list[TextRow] = []
    problems: list[RowProblem] = []
    for path in expand_paths(paths):
        kind = fmt or detect_format(path)
        items = _unlabelled(path) if kind is SourceFormat.LABELLED else READERS[kind](path, ladder)
        for item in items:
            if isinstance(item, RowProblem):
                problems.append(item)
            else:
                rows.append(TextRow(str(path), item.id, item.text))
    if not rows:
        raise DataError(
            f"no usable rows in {list(map(str, paths))}"
            + (f"; e.g. {problems[0]}" if problems else "")
        )
    return rows, problems


def _unlabelled(path: Path) -> Iterator[RawRow | RowProblem]:
    """Labelled-layout files read for their text only: a missing or unknown tier is fine."""
    for item in _labelled_records(path):
        if isinstance(item, RowProblem):
            yield item
            continue
        line, index, obj = item
        text = obj.get("text")
        if text is None and isinstance(obj.get("messages"), list):
            text = text_from_messages(obj["messages"])
        if not isinstance(text, str) or not text.strip():
            yield RowProblem(str(path), line, "missing or empty text")
            continue
        rid = str(obj.get("sample_id") or obj.get("id") or index)
        yield RawRow(rid, text, [], [], line=line)


# Readers kept in their own modules register themselves when imported.
import train.logs  # noqa: E402, F401  (escalation logs: SourceFormat.LOGS)
