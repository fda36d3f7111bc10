"""Shared pieces of the collect tests: a ladder pointing at the fake server, prompt files."""

from __future__ import annotations

import json
from pathlib import Path

PRICES = {"small": (1.0, 2.0), "medium": (3.0, 6.0), "large": (10.0, 30.0)}
KEY_ENV = "RUNG_TEST_FAKE_KEY"


def write_ladder(
    path: Path,
    base_url: str,
    extra: str = "",
    judge: bool = False,
    concurrency: int = 8,
    timeout_s: float = 10.0,
    pass_mark: float = 0.5,
) -> Path:
    parts = [f'name = "fake"\npass_mark = {pass_mark}\n']
    for name, (pin, pout) in PRICES.items():
        parts.append(
            f"""
[[tiers]]
name = "{name}"
model = "{name}-model"
litellm_model = "openai/{name}"
api_base = "{base_url}"
api_key_env = "{KEY_ENV}"
input_price = {pin}
output_price = {pout}
concurrency = {concurrency}
timeout_s = {timeout_s}
{extra}
"""
        )
    if judge:
        parts.append(
            f"""
[judge]
litellm_model = "openai/judge"
api_base = "{base_url}"
api_key_env = "{KEY_ENV}"
input_price = 5.0
output_price = 15.0
"""
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


def write_prompts(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def words(text: str) -> int:
    return len(text.split())
