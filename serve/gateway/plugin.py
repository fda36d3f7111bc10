"""rung as LiteLLM's complexity-router classifier (`classifier_type: custom`).

LiteLLM calls `await plugin.classify(context)` with a `RoutingContext` and routes to the tier
whose name it returns; None declines and lets `classifier_fallback` (or `fallback_tier`)
decide. This plugin sends `context.structured_messages` to rung's `/classify`, maps rung's tier
name through `RUNG_TIER_MAP`, and returns None on any failure: it never raises.

    # proxy config.yaml: a dotted path to the ready-made instance, configured by RUNG_* vars
    classifier_plugin: serve.gateway.plugin.classifier
    # SDK: pass an object
    Router(model_list=[... {"classifier_plugin": make_classifier(url=..., tier_map={...})}])

Per-request knobs ride in the request's `metadata["rung"]`: `quality`, `threshold`, `min_tier`,
`max_tier`.
Each decision is remembered briefly (by the text's sha256) so the log callback can record the
routed tier, model version and exploration flag next to the outcome.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from serve.gateway.aclient import AsyncRungClient
from serve.gateway.client import Decision
from serve.gateway.escalation import sha256_text, text_of
from serve.gateway.settings import GatewaySettings

KNOBS = ("quality", "threshold", "min_tier", "max_tier")


class DecisionMemo:
    """Recent decisions by text sha256, bounded in size and age (shared with the callback)."""

    def __init__(self, size: int = 10_000, ttl_s: float = 600.0) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._items: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, decision: Decision) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), decision)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, key: str) -> Decision | None:
        with self._lock:
            item = self._items.get(key)
        if item is None or time.monotonic() - item[0] > self.ttl_s:
            return None
        return item[1]


DECISIONS = DecisionMemo()


def rung_metadata(metadata: Any) -> dict[str, Any]:
    """The `rung` entry of a request's metadata (a dict), or {}."""
    if isinstance(metadata, Mapping):
        value = metadata.get("rung")
        if isinstance(value, Mapping):
            return dict(value)
    return {}


def client_from(settings: GatewaySettings) -> AsyncRungClient:
    return AsyncRungClient(
        settings.url,
        timeout_ms=settings.timeout_ms,
        fail_open_tier=settings.fail_open_tier or "large",
        api_key=settings.api_key_value(),
        cooldown_ms=settings.cooldown_ms,
    )


class RungConfigured:
    """Settings and the rung client, built on first use (from the environment unless given):
    what the classifier plugin and the pre-call hook share."""

    _settings: GatewaySettings | None
    _client: AsyncRungClient | None

    @property
    def settings(self) -> GatewaySettings:
        if self._settings is None:
            self._settings = GatewaySettings()
        return self._settings

    @property
    def client(self) -> AsyncRungClient:
        if self._client is None:
            self._client = client_from(self.settings)
        return self._client


class RungClassifier(RungConfigured):
    """LiteLLM `ClassifierPlugin`: `async classify(context) -> str | None`, never raising.

    Settings come from `RUNG_*` environment variables on first use unless given. LiteLLM
    deep-copies its router config; the plugin copies as itself so its connections are shared.
    """

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        memo: DecisionMemo | None = None,
    ) -> None:
        self._settings = settings
        self._client: AsyncRungClient | None = None
        self.memo = memo if memo is not None else DECISIONS
        self.stats = {"classified": 0, "declined": 0}

    async def classify(self, context: Any) -> str | None:
        try:
            return await self._classify(context)
        except Exception:  # noqa: BLE001 - any trouble means: let LiteLLM's fallback decide
            self.stats["declined"] += 1
            return None

    async def _classify(self, context: Any) -> str | None:
        messages = [dict(m) for m in (getattr(context, "structured_messages", None) or [])]
        knobs = rung_metadata(getattr(context, "metadata", None))
        decision = await self.client.classify(
            messages=messages, **{k: knobs[k] for k in KNOBS if knobs.get(k) is not None}
        )
        settings = self.settings
        if decision.fail_open and settings.fail_open_tier is None:
            self.stats["declined"] += 1
            return None
        text = text_of(messages)
        if text and not decision.fail_open:
            self.memo.put(sha256_text(text), decision)
        self.stats["classified"] += 1
        return settings.tier_map.get(decision.tier, decision.tier)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def __copy__(self) -> RungClassifier:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> RungClassifier:
        return self


def make_classifier(settings: GatewaySettings | None = None, **overrides: Any) -> RungClassifier:
    """A classifier from RUNG_* variables, with keyword overrides (url=..., tier_map=...)."""
    if overrides:
        base = settings.model_dump(exclude_unset=True) if settings is not None else {}
        settings = GatewaySettings(**{**base, **overrides})
    return RungClassifier(settings)


# The ready-made instance for LiteLLM proxy config.yaml:
#   classifier_plugin: serve.gateway.plugin.classifier
# It reads RUNG_* environment variables when the first request arrives.
classifier = RungClassifier()
