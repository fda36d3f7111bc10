"""The request schemas the OpenAPI document publishes: exactly what the server accepts.

Pydantic's schema for `ClassifyRequest` is looser than the server: it allows `text` and
`messages` together, neither, blank text, messages without a user turn, any tier name and
`min_tier` above `max_tier`, all of which get a 422. A schema-driven client (or schemathesis's
positive-data check) would build such requests, so the published schema adds what the server
checks (tests/serve/api/test_schemathesis.py holds the two together):

- `oneOf` on `text` / `messages`: exactly one of them, as a non-null value;
- `text` non-blank and at most `max_text_chars` long; `messages` with a user turn that has text;
- `min_tier` / `max_tier` from the served ladder (names or indices), and `min_tier <= max_tier`;
- at most `max_batch` batch items;
- `quality` and `threshold` not both (and `quality` only null when the served bundle has no
  calibration table, schema 1).

"Non-blank" is spelled as a class of Python's whitespace characters, so the schema and
`str.strip()` agree whichever regex engine a client uses.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from serve.api.schemas import BatchRequest, ClassifyRequest

REF = "#/components/schemas/{model}"


# Python's whitespace (what `str.strip()` removes, `str.isspace`) as explicit code points:
# `\s` differs between regex engines (ECMA's lacks U+001C..U+001F and U+0085, for one).
# tests/serve/api/test_openapi.py recomputes it from `str.isspace`.
WHITESPACE = (
    "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028-\\u2029"
    "\\u202f\\u205f\\u3000"
)
NON_BLANK = f"[^{WHITESPACE}]"  # at least one character that strip() keeps
NULL = {"type": "null"}


def _text_schema(base: dict[str, Any], max_chars: int) -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": NON_BLANK}
    return {**base, "anyOf": [text, NULL]}


def _user_turn(max_chars: int) -> dict[str, Any]:
    """A user message whose content has text: what `text_from_messages` reads."""
    part = {"type": "object", "required": ["text"], "properties": {"text": _non_blank(max_chars)}}
    content = {"anyOf": [_non_blank(max_chars), {"type": "array", "contains": part}]}
    return {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"const": "user"}, "content": content},
    }


def _non_blank(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_chars, "pattern": NON_BLANK}


def _tier_values(names: Sequence[str], start: int = 0) -> list[str | int]:
    return [*names[start:], *range(start, len(names))]


def _tier_schema(base: dict[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    if not names:  # no model loaded yet: any name or index may turn out to be valid
        return base
    return {**base, "anyOf": [{"enum": _tier_values(names)}, NULL]}


def _tier_order(names: Sequence[str]) -> dict[str, Any]:
    """min_tier <= max_tier, spelled out per min_tier (the ladder is a handful of tiers)."""
    branches: list[dict[str, Any]] = [{"properties": {"min_tier": NULL}}]
    for i in range(len(names)):
        branches.append(
            {
                "properties": {
                    "min_tier": {"enum": [names[i], i]},
                    "max_tier": {"anyOf": [{"enum": _tier_values(names, i)}, NULL]},
                }
            }
        )
    return {"anyOf": branches}


# `quality` and `threshold` exclude each other (a 422 naming `quality`).
ONE_SETTING = {
    "not": {
        "required": ["quality", "threshold"],
        "properties": {"quality": {"type": "number"}, "threshold": {"type": "number"}},
    }
}


def classify_request_schema(
    names: Sequence[str] | None, max_chars: int, knob: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ClassifyRequest, its $defs) as the server checks them."""
    schema = copy.deepcopy(ClassifyRequest.model_json_schema(ref_template=REF))
    defs = schema.pop("$defs", {})
    props = schema["properties"]
    props["text"] = _text_schema(props["text"], max_chars)
    messages = props["messages"]
    array = next(s for s in messages["anyOf"] if s.get("type") == "array")
    array["contains"] = _user_turn(max_chars)
    for field in ("min_tier", "max_tier"):
        props[field] = _tier_schema(props[field], names)
    schema["oneOf"] = [
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
    ]
    schema["allOf"] = [ONE_SETTING, *([_tier_order(names)] if names else [])]
    if not knob:
        props["quality"] = {**props["quality"], "anyOf": [NULL]}
    schema["description"] += (
        " Give exactly one of `text` and `messages`; with `messages`, the last user turn that "
        "has text is classified."
    )
    return schema, defs


def request_schemas(
    names: Sequence[str] | None, max_chars: int, max_batch: int, knob: bool = True
) -> dict[str, dict[str, Any]]:
    """Component schemas for the two request bodies, keyed by model name."""
    item, defs = classify_request_schema(names, max_chars, knob)
    batch = copy.deepcopy(BatchRequest.model_json_schema(ref_template=REF))
    batch.pop("$defs", None)
    batch["properties"]["items"]["maxItems"] = max_batch
    return {**defs, ClassifyRequest.__name__: item, BatchRequest.__name__: batch}
