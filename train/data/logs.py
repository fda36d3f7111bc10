"""Gateway escalation logs -> per-tier outcome rows, with untried tiers left unknown.

A gateway that routes with rung tries the routed tier and escalates one tier at a time on
failure, so each request tells us which tiers failed and which succeeded. Label rules (never a
guess): a tier that failed scores 0.0; a tier that succeeded scores 1.0 and, on the ordered
ladder, so does every tier above the lowest success; a tier never tried stays NaN (unknown),
so its head in `train.fit.heads.TierClassifier` masks the row. Two layouts are read, even
mixed in one file: one line per request with an `attempts` list, or one line per attempt
grouped by `request_id`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from serve.model.ladder import Ladder, LadderError
from serve.model.text import text_from_messages
from train.data.files import json_lines
from train.data.types import DataError, RawRow, RowProblem

LOG_GROUP = "logs"
HASH_ONLY = "logged without its text (hash only)"
HASH_ONLY_HELP = (
    "training needs the request text; the gateway wrote only its sha256 "
    "(set RUNG_ESCALATION_LOG_TEXT=true where the gateway runs to keep the text)"
)


class LogError(DataError):
    """Logs that cannot be used for retraining; the message says why."""


class Outcome(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Attempt:
    tier: int  # index on the ladder
    outcome: Outcome
    cost_usd: float = math.nan
    order: float = 0.0  # position within the request (attempt layout: `attempt` or line)


@dataclass
class LogRequest:
    request_id: str
    ts: dt.datetime
    text: str
    attempts: list[Attempt]
    explore: bool
    line: int


@dataclass(frozen=True)
class Labels:
    quality: list[float]
    observed: list[bool]  # tier tried (vs inferred from a cheaper success, or unknown)
    conflict: bool  # one tier both failed and succeeded: left unknown
    order_violation: bool  # a tier failed above a cheaper success: the observation is kept


# ---------------------------------------------------------------- label derivation


def derive_labels(attempts: list[Attempt], n_tiers: int) -> Labels:
    """Per-tier quality from what was tried; see the module docstring for the rules."""
    failed = {a.tier for a in attempts if a.outcome is Outcome.FAILURE}
    succeeded = {a.tier for a in attempts if a.outcome is Outcome.SUCCESS}
    conflicts = failed & succeeded
    quality = [math.nan] * n_tiers
    observed = [False] * n_tiers
    for t in failed - conflicts:
        quality[t], observed[t] = 0.0, True
    for t in succeeded - conflicts:
        quality[t], observed[t] = 1.0, True
    clean = succeeded - conflicts
    violation = False
    if clean:
        lowest = min(clean)
        for t in range(lowest + 1, n_tiers):
            if t in failed:
                violation = True  # observed failure wins over the ladder-order inference
            elif t not in conflicts:
                quality[t] = 1.0
    return Labels(quality, observed, bool(conflicts), violation)


# ---------------------------------------------------------------- parsing


class _Bad(Exception):
    """A malformed field; the message becomes the RowProblem reason."""


def parse_ts(value: Any) -> dt.datetime:
    """ISO 8601 (a trailing Z is fine; naive means UTC) or epoch seconds."""
    if isinstance(value, bool) or value is None or value == "":
        raise _Bad("missing ts")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _Bad(f"ts {value!r} is not a time")
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise _Bad(f"ts {value!r} is not ISO 8601") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _text(obj: dict[str, Any]) -> str | None:
    text = obj.get("text")
    if text is None and obj.get("messages") is not None:
        if not isinstance(obj["messages"], list):
            raise _Bad("messages must be a list of chat messages")
        text = text_from_messages(obj["messages"])
    if text is None:
        return None
    if not isinstance(text, str):
        raise _Bad("text must be a string")
    return text if text.strip() else None


def _request_id(obj: dict[str, Any]) -> str:
    rid = obj.get("request_id")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or str(rid).strip() == "":
        raise _Bad("missing request_id")
    return str(rid)


def _explore(obj: dict[str, Any]) -> bool:
    value = obj.get("explore", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _Bad(f"explore must be true or false, got {value!r}")
    return value


def _attempt(raw: Any, ladder: Ladder, order: float) -> Attempt:
    if not isinstance(raw, dict):
        raise _Bad("an attempt is not a JSON object")
    try:
        tier = ladder.index(str(raw.get("tier")))
    except LadderError as exc:
        raise _Bad(str(exc)) from None
    try:
        outcome = Outcome(raw.get("outcome"))
    except ValueError:
        raise _Bad(f"outcome must be 'success' or 'failure', got {raw.get('outcome')!r}") from None
    cost = raw.get("cost_usd")
    if cost is None:
        cost = math.nan
    elif isinstance(cost, bool) or not isinstance(cost, int | float) or not cost >= 0:
        raise _Bad(f"cost_usd must be a number >= 0, got {cost!r}")
    return Attempt(tier, outcome, float(cost), order)


def _check_routed(obj: dict[str, Any], ladder: Ladder) -> None:
    routed = obj.get("routed_tier")
    if routed is not None and str(routed) not in ladder.names:
        raise _Bad(f"routed_tier {routed!r} is not on the ladder {ladder.names}")


def _request_line(obj: dict[str, Any], ladder: Ladder, line: int) -> LogRequest:
    rid = _request_id(obj)
    text = _text(obj)
    if text is None:
        if obj.get("text_sha256"):
            raise _Bad(f"request {rid!r} {HASH_ONLY}: {HASH_ONLY_HELP}")
        raise _Bad("missing or empty text (or messages)")
    attempts = obj["attempts"]
    if not isinstance(attempts, list) or not attempts:
        raise _Bad("attempts must be a non-empty list")
    parsed = [_attempt(a, ladder, i) for i, a in enumerate(attempts)]
    _check_routed(obj, ladder)
    return LogRequest(rid, parse_ts(obj.get("ts")), text, parsed, _explore(obj), line)


@dataclass
class _Group:
    """Attempt lines of one request, gathered until the last file ends."""

    first_line: int
    path: Path
    lines: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def _attempt_group(rid: str, group: _Group, ladder: Ladder) -> LogRequest:
    texts, times, attempts, explore, hashed = set(), [], [], False, False
    reported: dict[int, Attempt] = {}  # tier -> the application's latest verdict on it
    for line, obj in group.lines:
        try:
            text = _text(obj)
            if text is not None:
                texts.add(text)
            hashed |= bool(obj.get("text_sha256"))
            times.append(parse_ts(obj.get("ts")))
            explore |= _explore(obj)
            _check_routed(obj, ladder)
            order = obj.get("attempt", line)
            if isinstance(order, bool) or not isinstance(order, int | float):
                raise _Bad(f"attempt must be a number, got {order!r}")
            attempt = _attempt(obj, ladder, float(order))
            if obj.get("source") == "report":
                reported[attempt.tier] = attempt
            else:
                attempts.append(attempt)
        except _Bad as exc:
            raise _Bad(f"{exc} (line {line}; request {rid!r} dropped)") from None
    if not texts:
        if hashed:
            raise _Bad(f"request {rid!r} {HASH_ONLY}: {HASH_ONLY_HELP}")
        raise _Bad(f"request {rid!r}: no attempt line carries text (or messages)")
    if len(texts) > 1:
        raise _Bad(f"request {rid!r}: its attempt lines carry different texts")
    attempts = _apply_reports(attempts, reported)
    attempts.sort(key=lambda a: a.order)
    return LogRequest(rid, min(times), texts.pop(), attempts, explore, group.first_line)


def _apply_reports(attempts: list[Attempt], reported: dict[int, Attempt]) -> list[Attempt]:
    """A reported outcome (`source: report`: a validator, a user's thumbs-down) is the
    application's verdict on the answer a tier gave. It replaces what the gateway saw on that
    tier (the call returned, so the gateway logged success) and keeps that attempt's place and
    cost; a report on a tier the logs never show tried is added as an attempt."""
    if not reported:
        return attempts
    out: list[Attempt] = []
    for a in attempts:
        if a.tier not in reported:
            out.append(a)
        elif all(b.tier != a.tier for b in out):
            out.append(Attempt(a.tier, reported[a.tier].outcome, a.cost_usd, a.order))
    tried = {a.tier for a in attempts}
    out.extend(v for t, v in reported.items() if t not in tried)
    return out


def read_requests(path: Path, ladder: Ladder) -> Iterator[LogRequest | RowProblem]:
    """Every request in one log file, or a RowProblem naming the line and what is wrong."""
    for _, item in read_request_files([path], ladder):
        yield item


def read_request_files(
    paths: list[Path], ladder: Ladder
) -> Iterator[tuple[Path, LogRequest | RowProblem]]:
    """Every request in these files, with the file it starts in. Attempt lines of one request
    are grouped across files: a gateway's log rotates by day and size, and an outcome the
    application reports later lands in whichever file is current then."""
    groups: dict[str, _Group] = {}
    for path in paths:
        seen: dict[str, int] = {}
        for item in json_lines(path):
            if isinstance(item, RowProblem):
                yield path, item
                continue
            lineno, obj = item
            try:
                _scan_line(obj, lineno, path, ladder, seen, groups)
                if "attempts" in obj:
                    yield path, _request_line(obj, ladder, lineno)
            except _Bad as exc:
                yield path, RowProblem(str(path), lineno, str(exc))
    for rid, group in groups.items():
        try:
            yield group.path, _attempt_group(rid, group, ladder)
        except _Bad as exc:
            yield group.path, RowProblem(str(group.path), group.first_line, str(exc))


def _scan_line(
    obj: Any,
    lineno: int,
    path: Path,
    ladder: Ladder,
    seen: dict[str, int],
    groups: dict[str, _Group],
) -> None:
    """Check one line's kind and ids; attempt lines join their request's group."""
    if not isinstance(obj, dict):
        raise _Bad("line is not a JSON object")
    if "attempts" in obj:
        rid = _request_id(obj)
        here = groups.get(rid)
        if rid in seen or (here is not None and here.path == path):
            first = seen.get(rid) or groups[rid].first_line
            raise _Bad(f"duplicate request_id {rid!r} (first on line {first})")
        seen[rid] = lineno
    elif "tier" in obj and "outcome" in obj:
        rid = _request_id(obj)
        if rid in seen:
            raise _Bad(
                f"attempt line for request {rid!r}, which already has a request line "
                f"(line {seen[rid]})"
            )
        groups.setdefault(rid, _Group(lineno, path)).lines.append((lineno, obj))
    else:
        raise _Bad("neither a request line (attempts) nor an attempt line (tier + outcome)")


def to_row(req: LogRequest, ladder: Ladder) -> RawRow:
    labels = derive_labels(req.attempts, len(ladder))
    cost = [math.nan] * len(ladder)
    for a in req.attempts:  # what the gateway paid; untried tiers are priced later
        if not math.isnan(a.cost_usd):
            cost[a.tier] = a.cost_usd if math.isnan(cost[a.tier]) else cost[a.tier] + a.cost_usd
    return RawRow(
        req.request_id,
        req.text,
        labels.quality,
        cost,
        LOG_GROUP,
        time=req.ts.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        line=req.line,
    )


def read_logs(path: Path, ladder: Ladder) -> Iterator[RawRow | RowProblem]:
    for item in read_requests(path, ladder):
        yield item if isinstance(item, RowProblem) else to_row(item, ladder)
