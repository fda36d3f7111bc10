"""The cascade as one library call, for applications that are their own gateway on the SDK.

    result = await cascade(messages, router=router, validator=lambda text: json_ok(text))

asks rung for the tier, calls that tier's model group through the `litellm.Router`, runs the
validator on the answer, and on an error or a rejected answer climbs one tier at a time up to
the top. Every attempt is written to the escalation log (validator verdict included), so
`rung retrain` learns from exactly what happened. The ladder is `RUNG_MODEL_GROUPS`, cheapest
first.
"""

from __future__ import annotations

import inspect
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from serve.gateway.aclient import AsyncRungClient
from serve.gateway.client import Decision
from serve.gateway.escalation import EscalationLog, attempt_line, shared_log, text_of
from serve.gateway.plugin import client_from
from serve.gateway.settings import GatewaySettings

Validator = Callable[[str], bool | Awaitable[bool]]


@dataclass(frozen=True)
class CascadeAttempt:
    tier: str
    model_group: str
    outcome: str  # success | failure
    latency_ms: float
    cost_usd: float | None = None
    error: str | None = None  # the exception, or "rejected by the validator"


@dataclass
class CascadeResult:
    answer: str | None  # the accepted answer (or the top tier's, if even it was rejected)
    tier: str | None  # the tier that produced `answer`
    response: Any  # LiteLLM's response object for `answer`
    validated: bool  # False: the top tier answered but the validator rejected it
    request_id: str
    decision: Decision | None
    attempts: list[CascadeAttempt] = field(default_factory=list)


class CascadeError(RuntimeError):
    """Every tier from the decided one up raised; `attempts` says what happened."""

    def __init__(self, message: str, attempts: list[CascadeAttempt]) -> None:
        super().__init__(message)
        self.attempts = attempts


async def cascade(
    messages: Sequence[dict[str, Any]],
    *,
    router: Any,
    validator: Validator | None = None,
    settings: GatewaySettings | None = None,
    client: AsyncRungClient | None = None,
    escalation_log: EscalationLog | None = None,
    request_id: str | None = None,
    threshold: float | None = None,
    min_tier: str | int | None = None,
    max_tier: str | int | None = None,
    metadata: dict[str, Any] | None = None,
    **completion_kwargs: Any,
) -> CascadeResult:
    """Answer `messages` from the cheapest sufficient tier; see the module docstring."""
    settings = settings or GatewaySettings()
    ladder = list(settings.model_groups)
    if not ladder:
        raise ValueError("RUNG_MODEL_GROUPS is empty: set e.g. small=cheap,medium=mid,large=big")
    own_client = client is None
    client = client or client_from(settings)
    try:
        decision = await client.classify(
            messages=list(messages), threshold=threshold, min_tier=min_tier, max_tier=max_tier
        )
    finally:
        if own_client:
            await client.aclose()
    start = decision.tier
    if decision.fail_open or start not in ladder:
        start = settings.fail_open_tier if settings.fail_open_tier in ladder else ladder[-1]
    rid = request_id or uuid.uuid4().hex
    if escalation_log is None:
        escalation_log = shared_log(settings)
    text = text_of(list(messages))
    attempts: list[CascadeAttempt] = []
    last: tuple[str, Any, str] | None = None  # tier, response, answer of the latest answer
    for n, tier in enumerate(ladder[ladder.index(start) :]):
        group = settings.model_groups[tier]
        rung = {"request_id": rid, "attempt": n, "routed_tier": start, "cascade": True}
        meta = {**(metadata or {}), "rung": rung}
        began = time.perf_counter()
        try:
            response = await router.acompletion(
                model=group, messages=list(messages), metadata=meta, **completion_kwargs
            )
        except Exception as exc:  # noqa: BLE001 - any provider error means: climb
            attempt = CascadeAttempt(
                tier, group, "failure", _ms(began), None, f"{type(exc).__name__}: {exc}"[:300]
            )
        else:
            answer = _answer(response)
            ok = await _judge(validator, answer)
            cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
            attempt = CascadeAttempt(
                tier,
                group,
                "success" if ok else "failure",
                _ms(began),
                cost if isinstance(cost, int | float) else None,
                None if ok else "rejected by the validator",
            )
            last = (tier, response, answer)
        attempts.append(attempt)
        if escalation_log is not None:
            escalation_log.append(
                attempt_line(
                    rid,
                    tier,
                    attempt.outcome,
                    text=text,
                    keep_text=settings.escalation_log_text,
                    attempt=n,
                    routed_tier=decision.tier if not decision.fail_open else None,
                    model_version=(decision.model or {}).get("version"),
                    explore=decision.explore,
                    cost_usd=attempt.cost_usd,
                    latency_ms=attempt.latency_ms,
                    model_group=group,
                    error=attempt.error,
                )
            )
        if attempt.outcome == "success" and last is not None and last[0] == tier:
            return CascadeResult(last[2], tier, last[1], True, rid, decision, attempts)
    if last is not None:
        return CascadeResult(last[2], last[0], last[1], False, rid, decision, attempts)
    raise CascadeError(f"every tier from {start} up failed (request {rid})", attempts)


def parses_as_json(answer: str) -> bool:
    """Validator: the answer is a JSON document (a fenced ```json block is accepted)."""
    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    try:
        json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    return True


def confidence_at_least(
    threshold: float, pattern: str = r"confidence\s*[:=]\s*([0-9]*\.?[0-9]+)\s*(%?)"
) -> Validator:
    """Validator factory: the answer reports its own confidence (e.g. a last line
    `Confidence: 0.85` or `confidence=85%`) and it is at least `threshold` (0..1). No line, or
    an unreadable one, rejects the answer."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    rx = re.compile(pattern, re.I)

    def check(answer: str) -> bool:
        found = rx.findall(answer)
        if not found:
            return False
        value, percent = found[-1] if isinstance(found[-1], tuple) else (found[-1], "")
        score = float(value) / (100.0 if percent else 1.0)
        return score >= threshold

    return check


def _ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


def _answer(response: Any) -> str:
    try:
        return str(response.choices[0].message.content or "")
    except (AttributeError, IndexError, TypeError):
        return ""


async def _judge(validator: Validator | None, answer: str) -> bool:
    if validator is None:
        return True
    try:
        verdict = validator(answer)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)
    except Exception:  # noqa: BLE001 - a validator that crashes on an answer rejects it
        return False
