"""Gateway-side settings: environment variables `RUNG_*`, so LiteLLM's config.yaml needs no code.

Read through `GatewaySettings()` when an integration is first used, never at import time.
Maps (`RUNG_TIER_MAP`, `RUNG_MODEL_GROUPS`) are written `small=SIMPLE,medium=MEDIUM` or JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def parse_map(value: Any) -> dict[str, str]:
    """`a=b,c=d` or a JSON object -> {"a": "b", "c": "d"}; a clear error otherwise."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError(f"expected `name=value,...` or a JSON object, got {value!r}")
    text = value.strip()
    if text.startswith("{"):
        try:
            return parse_map(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object: {exc.msg}") from None
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = pair.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise ValueError(f"{pair!r} is not name=value (write e.g. small=SIMPLE,large=COMPLEX)")
        out[key.strip()] = val.strip()
    return out


class GatewaySettings(BaseSettings):
    """What rung's LiteLLM integrations read; each field is also `RUNG_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="RUNG_", extra="ignore", frozen=True)

    url: str = Field(default="http://127.0.0.1:8000", description="the rung server")
    api_key: SecretStr | None = Field(default=None, description="bearer key rung requires")
    timeout_ms: float = Field(default=50.0, gt=0, description="budget for one /classify call")
    cooldown_ms: float = Field(
        default=1000.0, ge=0, description="after a transport failure, skip rung for this long"
    )
    fail_open_tier: str | None = Field(
        default=None,
        description="rung tier to use when rung does not answer. Unset: the classifier plugin "
        "declines (LiteLLM's classifier_fallback decides) and the pre-call hook uses the top "
        "tier of RUNG_MODEL_GROUPS",
    )
    tier_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="rung tier -> complexity-router tier name (unmapped names pass unchanged)",
    )
    model_groups: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="rung tier -> LiteLLM model group, cheapest first (pre-call hook, cascade, "
        "and the log callback, which attributes each attempt to a tier by its model group)",
    )
    virtual_model: str = Field(
        default="rung/auto", description="the model name the pre-call hook routes"
    )
    escalation_log_dir: Path | None = Field(
        default=None, description="folder for escalation logs; unset: nothing is written"
    )
    escalation_log_text: bool = Field(
        default=False,
        description="also write the request text (needed by `rung retrain`; off for privacy: "
        "by default only its sha256 is written)",
    )
    escalation_log_max_mb: float = Field(default=64.0, gt=0, description="rotate above this size")
    escalation_log_queue: int = Field(
        default=10_000, gt=0, description="lines waiting for the writer; beyond it, dropped"
    )

    @field_validator("tier_map", "model_groups", mode="before")
    @classmethod
    def _maps(cls, value: Any) -> dict[str, str]:
        return parse_map(value)

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None
