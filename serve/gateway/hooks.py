"""rung inside LiteLLM as a callback: a pre-call hook that routes by model group, and the
success/failure logging that writes rung's escalation logs.

`RungHook` is a LiteLLM `CustomLogger`. Register one instance (proxy config.yaml:
`litellm_settings: {callbacks: serve.gateway.hooks.hook}`; SDK: `litellm.callbacks = [hook]`).

- Pre-call hook (proxy): a request for the virtual model (`RUNG_VIRTUAL_MODEL`, default
  `rung/auto`) is sent to the model group of the tier rung decides (`RUNG_MODEL_GROUPS`).
  `metadata["rung"]` may pin a tier (`tier`), or pass `quality` / `threshold` / `min_tier` /
  `max_tier`.
- Logging (proxy and SDK): every attempt on a model group of `RUNG_MODEL_GROUPS` becomes one
  line in `RUNG_ESCALATION_LOG_DIR`; an attempt that raised is a failure. Quality failures only
  the application sees go through `report_outcome(request_id, tier, "failure")`.

LiteLLM's proxy only calls `async_pre_call_hook` when the instance's own class defines it
(`vars(type(cb))`), so subclasses that want the hook must define it themselves.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from serve.gateway.aclient import AsyncRungClient
from serve.gateway.client import Decision
from serve.gateway.escalation import (
    EscalationLog,
    attempt_line,
    sha256_text,
    shared_log,
    text_of,
)
from serve.gateway.plugin import (
    DECISIONS,
    KNOBS,
    DecisionMemo,
    RungConfigured,
    rung_metadata,
)
from serve.gateway.settings import GatewaySettings

log = logging.getLogger("rung.gateway")


def _metadata(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    params = kwargs.get("litellm_params") or {}
    for source in (params.get("metadata"), params.get("litellm_metadata"), kwargs.get("metadata")):
        if isinstance(source, Mapping):
            return dict(source)
    return {}


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return (end - start).total_seconds()
    if isinstance(start, int | float) and isinstance(end, int | float):
        return float(end - start)
    return None


class RungHook(CustomLogger, RungConfigured):
    """Pre-call routing by model group and escalation-log writing; never fails a request."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        memo: DecisionMemo | None = None,
        escalation_log: EscalationLog | None = None,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._client: AsyncRungClient | None = None
        self._log = escalation_log
        self.memo = memo if memo is not None else DECISIONS
        self.stats = {"routed": 0, "pinned": 0, "fail_open": 0, "logged": 0, "unmapped": 0}

    # -- configuration, read on first use ---------------------------------------------------

    @property
    def escalation_log(self) -> EscalationLog | None:
        if self._log is None:
            self._log = shared_log(self.settings)
        return self._log

    def tier_of_group(self, group: str | None) -> str | None:
        for tier, name in self.settings.model_groups.items():
            if name == group:
                return tier
        return None

    # -- pre-call hook (proxy) --------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        """Rewrite `model` from the virtual name to the decided tier's model group."""
        try:
            if data.get("model") == self.settings.virtual_model:
                await self.route(data)
        except Exception as exc:  # noqa: BLE001 - routing trouble must not fail the request
            log.warning("rung pre-call hook left the request unrouted: %s", exc)
        return data

    async def route(self, data: dict) -> str:
        """Decide the tier for one request body, in place; returns the tier."""
        groups = self.settings.model_groups
        if not groups:
            raise ValueError("RUNG_MODEL_GROUPS is empty: set e.g. small=cheap,large=big")
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        rung = rung_metadata(metadata)
        pin = rung.get("tier")
        decision: Decision | None = None
        if pin in groups:
            tier = str(pin)
            self.stats["pinned"] += 1
        else:
            knobs = {k: rung[k] for k in KNOBS if rung.get(k) is not None}
            decision = await self.client.classify(messages=data.get("messages") or [], **knobs)
            tier = decision.tier
            if decision.fail_open:
                self.stats["fail_open"] += 1
                tier = self.settings.fail_open_tier or list(groups)[-1]
            if tier not in groups:  # a tier with no group configured: the safe top one
                tier = list(groups)[-1]
        data["model"] = groups[tier]
        rung.setdefault("request_id", uuid.uuid4().hex)
        rung["routed_tier"] = tier
        if decision is not None:
            rung.update(
                model_version=(decision.model or {}).get("version"),
                explore=decision.explore,
                fail_open=decision.fail_open,
            )
        metadata["rung"] = rung
        self.stats["routed"] += 1
        return tier

    # -- logging (proxy and SDK) ------------------------------------------------------------

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._log_attempt(kwargs, "success", start_time, end_time, None)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        error = kwargs.get("exception") if isinstance(kwargs, Mapping) else None
        self._log_attempt(kwargs, "failure", start_time, end_time, error)

    def _log_attempt(
        self, kwargs: Any, outcome: str, start_time: Any, end_time: Any, error: Any
    ) -> None:
        try:
            self._write_attempt(kwargs, outcome, start_time, end_time, error)
        except Exception as exc:  # noqa: BLE001 - logging must never fail a request
            log.warning("rung could not log an attempt: %s", exc)

    def _write_attempt(
        self, kwargs: Mapping[str, Any], outcome: str, start_time: Any, end_time: Any, error: Any
    ) -> None:
        sink = self.escalation_log
        if sink is None:
            return
        metadata = _metadata(kwargs)
        rung = rung_metadata(metadata)
        if rung.get("cascade"):  # the cascade logs its own attempts, validator verdict included
            return
        tier = self._attempt_tier(metadata)
        if tier is None:
            self.stats["unmapped"] += 1
            return
        text = text_of(kwargs.get("messages"))
        decision = self.memo.get(sha256_text(text)) if text else None
        routed = rung.get("routed_tier") or (decision.tier if decision else None)
        version = rung.get("model_version")
        if version is None and decision is not None:
            version = (decision.model or {}).get("version")
        cost = kwargs.get("response_cost")
        if cost is None:
            cost = (kwargs.get("standard_logging_object") or {}).get("response_cost")
        seconds = _seconds(start_time, end_time)
        line = attempt_line(
            str(rung.get("request_id") or kwargs.get("litellm_call_id") or uuid.uuid4().hex),
            tier,
            outcome,
            text=text,
            keep_text=self.settings.escalation_log_text,
            attempt=rung.get("attempt"),
            routed_tier=routed if routed in self.settings.model_groups else None,
            model_version=version,
            explore=bool(rung.get("explore", decision.explore if decision else False)),
            cost_usd=cost if isinstance(cost, int | float) else None,
            latency_ms=None if seconds is None else seconds * 1000,
            model_group=self.settings.model_groups.get(tier),
            error=None if error is None else f"{type(error).__name__}: {error}"[:300],
        )
        if sink.append(line):
            self.stats["logged"] += 1

    def _attempt_tier(self, metadata: Mapping[str, Any]) -> str | None:
        """The rung tier an attempt ran on: its model group, or the complexity router's tier."""
        for key in ("deployment_model_name", "model_group"):
            tier = self.tier_of_group(metadata.get(key))
            if tier is not None:
                return tier
        decision = metadata.get("routing_decision")
        if isinstance(decision, Mapping) and decision.get("tier") is not None:
            routed = str(decision["tier"]).casefold()
            for rung_tier, litellm_tier in self.settings.tier_map.items():
                if litellm_tier.casefold() == routed:
                    return rung_tier
            for rung_tier in self.settings.model_groups:
                if rung_tier.casefold() == routed:
                    return rung_tier
        return None

    # -- outcomes only the application knows -------------------------------------------------

    def report_outcome(self, request_id: str, tier: str, outcome: str) -> bool:
        """Record the application's verdict (a validator, a thumbs-down) on a tier's answer.

        Appends an attempt line with `source: report`; `rung retrain` lets it override what
        the gateway saw for that tier of that request. False when nothing was written.
        """
        sink = self.escalation_log
        if sink is None:
            return False
        return sink.append(attempt_line(request_id, tier, outcome, source="report"))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._log is not None:
            self._log.flush()


# The ready-made instance for LiteLLM proxy config.yaml:
#   litellm_settings: {callbacks: serve.gateway.hooks.hook}
hook = RungHook()


def report_outcome(request_id: str, tier: str, outcome: str) -> bool:
    """`hook.report_outcome`: record an outcome only the application knows."""
    return hook.report_outcome(request_id, tier, outcome)
