"""A models folder with versioned bundles and a `current` pointer that moves atomically.

`models/current` is a relative symlink to a bundle folder. Moving it is `os.replace` of a
freshly made symlink, atomic on POSIX, so a server polling it sees the old or the new target,
never neither. `models/.history.jsonl` records every switch so `rollback` knows where to go.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve.model.bundle import MANIFEST, BundleError, read_manifest

CURRENT = "current"
HISTORY = ".history.jsonl"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    current: bool
    version: str
    created_at: str
    threshold: float
    metrics: dict[str, Any]
    lineage: dict[str, Any]


def current_target(models_dir: str | Path) -> Path | None:
    """The bundle `current` points to, or None when no model has been promoted."""
    link = Path(models_dir) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    if not (target / MANIFEST).is_file():
        raise BundleError(f"{link} points to {target}, which is not a bundle")
    return target


def set_current(
    models_dir: str | Path, name: str, reason: str = "promote", check: bool = True
) -> Path:
    """Point `current` at models_dir/name in one atomic step and record the switch.

    With `check` (the default) the bundle is first loaded by the serving code and must answer
    the smoke query (`checks.check_bundle`): a bundle a server would refuse is never promoted.
    `check=False` exists for tests that need a pointer to a broken bundle.
    """
    root = Path(models_dir)
    target = root / name
    if name in (CURRENT, HISTORY) or not (target / MANIFEST).is_file():
        raise BundleError(f"{target} is not a bundle (no {MANIFEST})")
    read_manifest(target)
    if check:
        from serve.model.checks import check_bundle  # loads onnxruntime: only when promoting

        check_bundle(target)
    previous = current_target(root)
    tmp = root / f".{CURRENT}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(name, tmp)
    os.replace(tmp, root / CURRENT)
    entry = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "action": reason,
        "to": name,
        "from": previous.name if previous else None,
    }
    with open(root / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
    return target


def history(models_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(models_dir) / HISTORY
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a crash must not block rollback
    return out


def promotion_stack(models_dir: str | Path) -> list[str]:
    """Models in the order they became current, with rolled-back ones popped off."""
    stack: list[str] = []
    for entry in history(models_dir):
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
        elif entry.get("to"):
            stack.append(entry["to"])
    return stack


def fallback_candidates(models_dir: str | Path, exclude: str | None = None) -> list[str]:
    """Bundles `current` has named, newest first, without repeats or `exclude`.

    A server whose pointer names a bundle it cannot serve tries these in order at start-up.
    """
    root = Path(models_dir)
    seen: list[str] = []
    for entry in reversed(history(root)):
        for name in (entry.get("to"), entry.get("from")):
            if (
                isinstance(name, str)
                and name not in seen
                and name != exclude
                and name not in (CURRENT, HISTORY)
                and (root / name / MANIFEST).is_file()
            ):
                seen.append(name)
    return seen


def pointer_folder(source: str | Path) -> Path | None:
    """The models folder when `source` is its `current` pointer, else None."""
    path = Path(source)
    return path.parent if path.name == CURRENT and path.is_symlink() else None


def rollback(models_dir: str | Path) -> Path:
    """Point `current` at the model that was current before it; repeated rollbacks keep
    walking back through the promotions, they do not bounce between two models."""
    current = current_target(models_dir)
    stack = promotion_stack(models_dir)
    if current is None or len(stack) < 2:
        raise BundleError("nothing to roll back to: no earlier promotion is recorded")
    if stack[-1] != current.name:
        raise BundleError(
            f"current points to {current.name}, which rung did not promote last "
            f"({stack[-1]}); promote a model explicitly"
        )
    return set_current(models_dir, stack[-2], reason="rollback")


def list_models(models_dir: str | Path) -> list[ModelEntry]:
    root = Path(models_dir)
    if not root.is_dir():
        raise BundleError(f"models folder not found: {root}")
    current = current_target(root)
    entries = []
    for path in sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    ):
        try:
            m = read_manifest(path)
        except BundleError:
            continue
        entries.append(
            ModelEntry(
                path.name,
                path,
                current == path.resolve(),
                m.version,
                m.created_at,
                m.threshold,
                m.metrics,
                m.lineage,
            )
        )
    return sorted(entries, key=lambda e: e.created_at)
