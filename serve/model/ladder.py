"""The tier ladder: one TOML file drives collection, training, evaluation and serving.

Lives in `serve/` because the server needs the ladder (from the manifest) and `serve` must never
import `train`. A tier may also say how to call it (`litellm_model`, `api_base`, ...), which
`rung collect` uses; the server only reads those fields, it never needs LiteLLM. Keys never
live in the file: `api_key_env` names an environment variable.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from serve.model.errors import RungError


class LadderError(RungError):
    """A ladder file or dict that cannot be used; the message says which field and why."""


class UnsolvedPolicy(str, Enum):
    """What training does with rows that no tier answered well."""

    TOP = "top"  # label them with the top tier: the best we have
    DROP = "drop"  # leave them out of training


DEFAULT_OUTPUT_TOKENS = 300
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONCURRENCY = 8
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEYS = {"api_key", "key", "token", "secret", "password"}


@dataclass(frozen=True)
class Tier:
    name: str
    model: str = ""  # the outcome-table column; defaults to litellm_model
    input_price: float = 0.0  # USD per 1M input tokens, used where rows carry no cost
    output_price: float = 0.0  # USD per 1M output tokens
    output_tokens: int = DEFAULT_OUTPUT_TOKENS  # assumed average answer length, for cost estimates
    # How to call the tier (rung collect, through LiteLLM); unused by training and serving.
    litellm_model: str = ""  # e.g. "openai/gpt-4o-mini", "ollama/llama3:8b"
    api_base: str = ""
    api_key_env: str = ""  # the NAME of an environment variable holding the key
    max_tokens: int | None = None
    temperature: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    concurrency: int = DEFAULT_CONCURRENCY  # calls in flight to this tier at most

    def estimate_cost(self, input_tokens: float) -> float:
        """USD for one request when the data carries no measured cost."""
        return (input_tokens * self.input_price + self.output_tokens * self.output_price) / 1e6

    @property
    def has_prices(self) -> bool:
        return self.input_price > 0 or self.output_price > 0

    def token_cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD for measured token counts at this tier's prices (per 1M tokens)."""
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6


TIER_KEYS = {f for f in Tier.__dataclass_fields__}


def _tier_from_dict(t: Any, where: str) -> Tier:
    if not isinstance(t, dict) or "name" not in t:
        raise LadderError(f"{where} needs at least a name")
    secret = sorted(set(t) & _SECRET_KEYS)
    if secret:
        raise LadderError(
            f"{where}: {secret[0]!r} is refused: keys never go in the ladder file; put the key "
            "in an environment variable and name it with api_key_env"
        )
    unknown = set(t) - TIER_KEYS
    if unknown:
        raise LadderError(f"{where} has unknown keys {sorted(unknown)}")
    env = str(t.get("api_key_env", ""))
    if env and not _ENV_NAME.match(env):
        raise LadderError(
            f"{where}: api_key_env must be the name of an environment variable "
            "(letters, digits, _), not the key itself"
        )
    try:
        max_tokens = t.get("max_tokens")
        tier = Tier(
            name=str(t["name"]),
            model=str(t.get("model") or t.get("litellm_model") or ""),
            input_price=float(t.get("input_price", 0.0)),
            output_price=float(t.get("output_price", 0.0)),
            output_tokens=int(t.get("output_tokens", DEFAULT_OUTPUT_TOKENS)),
            litellm_model=str(t.get("litellm_model", "")),
            api_base=str(t.get("api_base", "")),
            api_key_env=env,
            max_tokens=None if max_tokens is None else int(max_tokens),
            temperature=float(t.get("temperature", 0.0)),
            timeout_s=float(t.get("timeout_s", DEFAULT_TIMEOUT_S)),
            concurrency=int(t.get("concurrency", DEFAULT_CONCURRENCY)),
        )
    except (TypeError, ValueError) as exc:
        raise LadderError(f"{where}: {exc}") from None
    _check_tier(tier, where)
    return tier


def _check_tier(t: Tier, where: str) -> None:
    if not t.name or not t.name.strip():
        raise LadderError("every tier needs a non-empty name")
    if t.input_price < 0 or t.output_price < 0 or t.output_tokens < 0:
        raise LadderError(f"{where}: prices and output_tokens must be >= 0")
    if t.max_tokens is not None and t.max_tokens < 1:
        raise LadderError(f"{where}: max_tokens must be >= 1")
    if not 0.0 <= t.temperature <= 2.0:
        raise LadderError(f"{where}: temperature must lie in [0, 2]")
    if not t.timeout_s > 0:
        raise LadderError(f"{where}: timeout_s must be > 0")
    if t.concurrency < 1:
        raise LadderError(f"{where}: concurrency must be >= 1")


@dataclass(frozen=True)
class Ladder:
    tiers: tuple[Tier, ...]
    pass_mark: float = 0.5
    unsolved: UnsolvedPolicy = UnsolvedPolicy.TOP
    name: str = "default"
    judge: Tier | None = None  # the LLM that grades answers for `rung collect --scorer judge`
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.tiers) < 2:
            raise LadderError("a ladder needs two or more tiers, in cost order")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise LadderError(f"tier names must be unique, got {names}")
        for t in self.tiers:
            _check_tier(t, f"tier {t.name!r}")
        if self.judge is not None:
            _check_tier(self.judge, "judge")
        if not 0.0 <= self.pass_mark <= 1.0:
            raise LadderError(f"pass_mark must lie in [0, 1], got {self.pass_mark}")
        self._index.update({n: i for i, n in enumerate(names)})

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def top(self) -> int:
        return len(self.tiers) - 1

    def __len__(self) -> int:
        return len(self.tiers)

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise LadderError(f"unknown tier {name!r}; the ladder has {self.names}") from None

    def model_columns(self) -> list[str]:
        return [t.model for t in self.tiers]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "pass_mark": self.pass_mark,
            "unsolved": self.unsolved.value,
            "tiers": [asdict(t) for t in self.tiers],
        }
        if self.judge is not None:
            out["judge"] = asdict(self.judge)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], name: str = "default") -> Ladder:
        if not isinstance(raw, dict):
            raise LadderError("a ladder must be a table / object")
        tiers_raw = raw.get("tiers")
        if not isinstance(tiers_raw, list) or not tiers_raw:
            raise LadderError("the ladder needs a [[tiers]] list with two or more entries")
        tiers = [_tier_from_dict(t, f"tiers[{i}]") for i, t in enumerate(tiers_raw)]
        judge_raw = raw.get("judge")
        if judge_raw is not None and not isinstance(judge_raw, dict):
            raise LadderError("judge must be a table: [judge] with litellm_model = ...")
        judge = None
        if judge_raw is not None:
            judge = _tier_from_dict({"name": "judge", **judge_raw}, "judge")
            if not judge.litellm_model:
                raise LadderError("judge needs litellm_model, the model that grades answers")
        try:
            unsolved = UnsolvedPolicy(raw.get("unsolved", "top"))
        except ValueError:
            raise LadderError(
                f"unsolved must be 'top' or 'drop', got {raw.get('unsolved')!r}"
            ) from None
        try:
            pass_mark = float(raw.get("pass_mark", 0.5))
        except (TypeError, ValueError):
            raise LadderError(f"pass_mark must be a number, got {raw.get('pass_mark')!r}") from None
        return cls(
            tiers=tuple(tiers),
            pass_mark=pass_mark,
            unsolved=unsolved,
            name=str(raw.get("name", name)),
            judge=judge,
        )

    @classmethod
    def from_toml(cls, path: str | Path) -> Ladder:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LadderError(f"ladder file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise LadderError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(raw, name=path.stem)


def default_ladder() -> Ladder:
    """small / medium / large with RouterBench's models and list prices, for labelled data."""
    return Ladder(
        tiers=(
            Tier("small", "mistralai/mistral-7b-chat", 0.2, 0.2),
            Tier("medium", "mistralai/mixtral-8x7b-chat", 0.6, 0.6),
            Tier("large", "gpt-4-1106-preview", 10.0, 30.0),
        ),
        name="default",
    )
