"""Helpers for the deploy tests: the external tools they need, the Containerfile read as
instructions, and the kustomize output read as Kubernetes objects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONTAINERFILE = ROOT / "Containerfile"
KUSTOMIZATIONS = {
    "base": K8S,
    "demo": K8S / "overlays" / "demo",
    "prometheus-operator": K8S / "overlays" / "prometheus-operator",
}
REQUIRE_ENV = "RUNG_REQUIRE_DEPLOY_TOOLS"


def need(*tools: str) -> None:
    """Skip when a tool is missing, or fail when RUNG_REQUIRE_DEPLOY_TOOLS=1 (CI sets it, so
    the deploy tests cannot silently stop running there)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    why = f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{why}, and {REQUIRE_ENV}=1")
    pytest.skip(why)


def project_version() -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


# ---- the Containerfile ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: str  # the `AS` name of the stage it belongs to ("" before the first FROM)
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of CMD / ENTRYPOINT / HEALTHCHECK ... CMD [...]."""
        return list(json.loads(self.args[self.args.index("[") :]))


def containerfile(path: Path = CONTAINERFILE) -> list[Instruction]:
    """Instructions in order, with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage, pending = "", ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def stage_config(instructions: list[Instruction], stage: str) -> dict[str, Instruction]:
    """The last of each instruction that shapes a stage's config, following `FROM <stage>`
    back through the stages it builds on."""
    by_stage: dict[str, list[Instruction]] = {}
    for ins in instructions:
        by_stage.setdefault(ins.stage, []).append(ins)
    chain = []
    name: str | None = stage
    while name is not None and name in by_stage:
        chain.append(name)
        parent = by_stage[name][0].args.split()[0]
        name = parent if parent in by_stage else None
    config: dict[str, Instruction] = {}
    for name in reversed(chain):
        for ins in by_stage[name]:
            config[ins.keyword] = ins
    return config


# ---- kustomize ------------------------------------------------------------------------------


def render(kustomization: Path) -> list[dict[str, Any]]:
    import yaml

    need("kubectl")
    out = subprocess.run(
        ["kubectl", "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
