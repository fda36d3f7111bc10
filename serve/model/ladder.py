"""The tier ladder: one TOML file drives training, evaluation and serving.

Lives in `serve/` because the server needs the ladder (from the manifest) and `serve` must never
import `train`.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Tier:
    name: str
    model: str = ""
    input_price: float = 0.0  # USD per 1M input tokens, used where rows carry no cost
    output_price: float = 0.0  # USD per 1M output tokens
    output_tokens: int = DEFAULT_OUTPUT_TOKENS  # assumed average answer length, for cost estimates

    def estimate_cost(self, input_tokens: float) -> float:
        """USD for one request when the data carries no measured cost."""
        return (input_tokens * self.input_price + self.output_tokens * self.output_price) / 1e6


@dataclass(frozen=True)
class Ladder:
    tiers: tuple[Tier, ...]
    pass_mark: float = 0.5
    unsolved: UnsolvedPolicy = UnsolvedPolicy.TOP
    name: str = "default"
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.tiers) < 2:
            raise LadderError("a ladder needs two or more tiers, in cost order")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise LadderError(f"tier names must be unique, got {names}")
        for t in self.tiers:
            if not t.name or not t.name.strip():
                raise LadderError("every tier needs a non-empty name")
            if t.input_price < 0 or t.output_price < 0 or t.output_tokens < 0:
                raise LadderError(f"tier {t.name!r}: prices and output_tokens must be >= 0")
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
        return {
            "name": self.name,
            "pass_mark": self.pass_mark,
            "unsolved": self.unsolved.value,
            "tiers": [asdict(t) for t in self.tiers],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], name: str = "default") -> Ladder:
        if not isinstance(raw, dict):
            raise LadderError("a ladder must be a table / object")
        tiers_raw = raw.get("tiers")
        if not isinstance(tiers_raw, list) or not tiers_raw:
            raise LadderError("the ladder needs a [[tiers]] list with two or more entries")
        tiers = []
        for i, t in enumerate(tiers_raw):
            if not isinstance(t, dict) or "name" not in t:
                raise LadderError(f"tiers[{i}] needs at least a name")
            unknown = set(t) - {"name", "model", "input_price", "output_price", "output_tokens"}
            if unknown:
                raise LadderError(f"tiers[{i}] has unknown keys {sorted(unknown)}")
            try:
                tiers.append(
                    Tier(
                        name=str(t["name"]),
                        model=str(t.get("model", "")),
                        input_price=float(t.get("input_price", 0.0)),
                        output_price=float(t.get("output_price", 0.0)),
                        output_tokens=int(t.get("output_tokens", DEFAULT_OUTPUT_TOKENS)),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise LadderError(f"tiers[{i}]: {exc}") from None
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
