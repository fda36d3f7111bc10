"""Request and response shapes: validation on the way in, OpenAPI docs with examples.

Unknown fields are ignored everywhere (documented policy): a gateway can forward its whole
chat-completions body (`model`, `temperature`, `tools`, ...) and rung reads only what it needs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

SHORT = "What is the capital of France?"
CHAT: list[JsonValue] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Prove that the square root of 2 is irrational."},
]


class Message(BaseModel):
    """One OpenAI chat message; content may be a string or a list of typed parts."""

    model_config = ConfigDict(extra="ignore")

    role: str = Field(..., description="system, user, assistant, tool, ...", examples=["user"])
    content: str | list[dict[str, Any]] | None = Field(
        None,
        description="text, or OpenAI content parts (only `text` parts are read)",
        examples=["Summarise this paragraph in one sentence."],
    )


class ClassifyRequest(BaseModel):
    """One request to classify: `text`, or chat `messages` (the last user turn is read)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"text": SHORT},
                {"messages": CHAT, "quality": 0.9},
                {"text": SHORT, "threshold": 0.8},
                {"text": SHORT, "min_tier": "medium"},
            ]
        },
    )

    text: str | None = Field(None, description="the prompt to classify", examples=[SHORT])
    messages: list[Message] | None = Field(
        None, description="OpenAI chat messages; give this or `text`, not both"
    )
    quality: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="the share of the top tier's quality to keep: the bundle's calibration "
        "table maps it to the cheapest setting of its rule that kept this share on held-out "
        "data (default: the bundle's own, usually 0.95); lower saves more. Bundles built "
        "before schema 2 have no table and refuse it (use threshold)",
        examples=[0.9],
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="decide by the threshold rule instead: the cheapest tier whose "
        "p_sufficient reaches this value; lower saves more, higher protects quality. "
        "Give quality or threshold, not both",
        examples=[0.7],
    )
    min_tier: str | int | None = Field(
        None, description="never answer below this tier (name or index)", examples=["medium"]
    )
    max_tier: str | int | None = Field(
        None,
        description="never answer above this tier (name or index), e.g. while the top tier is down",
        examples=["medium"],
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"items": [{"text": "hi"}, {"text": SHORT}]}]},
    )

    items: list[ClassifyRequest] = Field(
        ...,
        min_length=1,
        description="requests to classify together (at most the server's "
        "max_batch, default 256); results come back in the same order",
    )


class ModelRef(BaseModel):
    name: str = Field(..., examples=["default"])
    version: str = Field(..., examples=["default@20260101T000000Z"])


class ClassifyResponse(BaseModel):
    tier: str = Field(..., description="cheapest tier predicted to suffice", examples=["small"])
    tier_index: int = Field(
        ..., description="its position in the ladder, 0 = cheapest", examples=[0]
    )
    p_sufficient: dict[str, float] = Field(
        ...,
        description="per tier: probability that this tier (or a cheaper one) suffices; "
        "non-decreasing along the ladder, 1.0 for the top tier",
        examples=[{"small": 0.91, "medium": 0.97, "large": 1.0}],
    )
    p_correct: dict[str, float] | None = Field(
        ...,
        description="per tier: estimated probability that this tier answers the request well "
        "(any order; the utility rule's input); null for bundles built before schema 2",
        examples=[{"small": 0.52, "medium": 0.71, "large": 0.86}],
    )
    cost_usd: float = Field(
        ...,
        description="estimated USD cost of this request on the chosen tier: input tokens x "
        "input price + predicted (or the ladder's) answer tokens x output price",
        examples=[0.00004],
    )
    rule: str = Field(
        ...,
        description="the decision rule used: `utility` (argmax p_correct - lambda x cost) or "
        "`threshold` (cheapest tier with p_sufficient >= threshold)",
        examples=["utility"],
    )
    quality: float | None = Field(
        ...,
        description="the quality setting used (the request's, or the bundle's default); null "
        "when the request gave a threshold or the bundle has no calibration table",
        examples=[0.95],
    )
    threshold: float | None = Field(
        ..., description="the threshold applied (threshold rule), else null", examples=[0.68]
    )
    lambda_: float | None = Field(
        ...,
        alias="lambda",
        description="the lambda applied, in quality per USD (utility rule), else null",
        examples=[41.5],
    )
    model: ModelRef
    explore: bool = Field(
        ...,
        description="true when this answer was moved one tier down on purpose to learn "
        "whether the cheaper tier suffices (RUNG_EXPLORE_RATE); log it with the outcome",
    )


class BatchResponse(BaseModel):
    items: list[ClassifyResponse]


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(..., examples=[["body", "text"]])
    msg: str = Field(..., examples=["text must not be empty or whitespace"])
    type: str = Field(..., examples=["value_error"])


class ErrorResponse(BaseModel):
    """422 and 413 carry a list naming each field; other errors a single string."""

    detail: list[ErrorItem] | str


class Health(BaseModel):
    status: str = Field(..., examples=["ok"])


class Attempt(BaseModel):
    at: str
    reason: str = Field(..., examples=["pointer moved"])
    target: str
    ok: bool
    version: str | None = None
    error: str | None = None


class Fallback(BaseModel):
    pointer: str = Field(..., description="the pointer, e.g. models/current")
    names: str = Field(..., description="the bundle it names, refused")
    error: str = Field(..., description="why that bundle was refused")
    serving: str = Field(..., description="the bundle served instead")


class Ready(BaseModel):
    ready: bool
    model: ModelRef | None = None
    path: str | None = Field(None, description="the bundle folder being served")
    loaded_at: str | None = None
    smoke_p_sufficient: list[float] | None = Field(
        None, description="the smoke query's answer when this bundle was loaded"
    )
    last_reload: Attempt | None = Field(None, description="the latest reload attempt")
    last_refusal: Attempt | None = Field(
        None, description="the latest refused bundle, kept visible while the old one serves"
    )
    fallback: Fallback | None = Field(
        None,
        description="set when the pointer named a bundle that failed its checks at start-up "
        "and the newest good bundle in its history serves instead; null otherwise",
    )


class ModelSummary(BaseModel):
    name: str
    version: str
    created_at: str
    ladder: list[dict[str, Any]] = Field(..., description="tiers, cheapest first")
    threshold: float
    threshold_target: dict[str, Any]
    embedder: dict[str, Any]
    token_cap: int = Field(
        ..., description="tokens read per request; longer text is truncated, never refused"
    )
    metrics: dict[str, Any]
    path: str
