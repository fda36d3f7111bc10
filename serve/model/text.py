"""Turning a request (plain text or OpenAI chat messages) into the text rung classifies.

Shared by the server, training and log readers so a request is read the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def message_text(content: Any) -> str:
    """OpenAI content is a string or a list of parts; only text parts carry words."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str) and p)
    return ""


def text_from_messages(messages: Sequence[Any], include_history: bool = False) -> str:
    """The last user turn that has text, or (with history) every turn joined, oldest first.

    Accepts dicts or objects with `role` / `content` attributes (pydantic models).
    """

    def field(m: Any, name: str) -> Any:
        return m.get(name) if isinstance(m, dict) else getattr(m, name, None)

    if include_history:
        return "\n".join(t for m in messages if (t := message_text(field(m, "content"))).strip())
    for m in reversed(messages):
        if field(m, "role") == "user" and (text := message_text(field(m, "content"))).strip():
            return text
    return ""
