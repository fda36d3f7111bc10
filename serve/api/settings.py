"""Server settings: environment variables with the prefix `RUNG_` (or keyword arguments).

Built inside `create_app`, never at import time, so tests can build many apps with different
settings and `uvicorn --factory` workers read the environment the CLI prepared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serve.model.registry import CURRENT

DEFAULT_MODELS_DIR = Path("models")
DEFAULT_BUNDLE = DEFAULT_MODELS_DIR / "default"


def fastapi_options() -> dict[str, Any]:
    """Keyword arguments for `FastAPI(...)`, shared by the app and the bench's no-op floor.

    FastAPI versions with built-in OpenTelemetry check their providers on every request
    (measured ~5 us); rung exports its own Prometheus metrics, so that is switched off.
    """
    import inspect

    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    return {"telemetry": off}


class Settings(BaseSettings):
    """Everything the server reads; each field is also `RUNG_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RUNG_", extra="forbid", frozen=True)

    model: Path | None = Field(
        default=None, description="bundle folder to serve (a symlink is followed on every poll)"
    )
    models_dir: Path | None = Field(
        default=None, description="models folder; the served bundle is what its `current` points to"
    )
    poll_seconds: float = Field(
        default=2.0,
        ge=0.0,
        description="how often to check whether the served path now points "
        "elsewhere; 0 turns polling off",
    )
    max_text_chars: int = Field(default=32_000, gt=0, description="longer text is refused with 413")
    max_batch: int = Field(
        default=256, gt=0, description="more items in one batch is refused with 413"
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="a larger request body is refused with 413"
    )
    token_cap: int | None = Field(
        default=None,
        gt=0,
        description="truncate text to this many tokens; may only lower the "
        "bundle's own cap (the classifier never saw longer inputs)",
    )
    include_history: bool = Field(
        default=False, description="classify every chat turn joined, not only the last user turn"
    )
    allow_ladder_change: bool = Field(
        default=False,
        description="accept a reload whose tier names differ from the served bundle's",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="when set, /classify requires `Authorization: Bearer <key>` or "
        "`X-API-Key: <key>`",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token for POST /admin/reload; the route refuses all "
        "callers while it is unset",
    )
    log_requests: bool = Field(
        default=True,
        description="one log line per classified request with a sha256 prefix of the "
        "text, never the text itself (~6 us each; false turns it off)",
    )
    log_text: bool = Field(default=False, description="also log the request text (privacy: off)")
    log_level: str = Field(default="info", description="level for rung's loggers")
    explore_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=0.5,
        description="share of requests sent one tier below the decision "
        "to learn whether the cheaper tier suffices",
    )
    explore_seed: int | None = Field(default=None, description="seed for exploration (tests)")
    fast_lane: bool = Field(
        default=True,
        description="answer POST /classify from an ASGI fast lane before FastAPI's routing "
        "(same validation, errors, auth and metrics; see serve/lane.py)",
    )
    reload_on_sighup: bool = Field(default=True, description="reload the model on SIGHUP")

    @model_validator(mode="after")
    def _one_source(self) -> Settings:
        if self.model is not None and self.models_dir is not None:
            raise ValueError("set model or models_dir, not both")
        return self

    def source(self) -> Path:
        """The path to serve and watch: the bundle, models_dir/current, or the default."""
        if self.model is not None:
            return self.model
        if self.models_dir is not None:
            return self.models_dir / CURRENT
        current = DEFAULT_MODELS_DIR / CURRENT
        return current if current.is_symlink() or current.exists() else DEFAULT_BUNDLE
