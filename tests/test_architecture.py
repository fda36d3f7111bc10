"""The tree shows the architecture: rooms by role, one import direction, no circles.

Each room may import only itself and the rooms listed for it: a newcomer knows from a file's
folder what it may import. `serve` never imports `train`; the request path imports nothing from
`serve.bench` or `serve.gateway`.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest

from tests.support.imports import cycles, import_graph, room
from tests.support.paths import ROOT

MAY_IMPORT: dict[str, set[str]] = {
    "serve.model": set(),
    "serve.api": {"serve.model"},
    "serve.gateway": {"serve.model"},
    "serve.bench": {"serve.model", "serve.api", "serve.gateway"},  # bench gateway drives it
    "serve": {"serve.model", "serve.api", "serve.gateway"},  # the two kept import paths
    "train.data": {"serve.model"},
    "train.embedders": {"serve.model"},
    "train.evaluation": {"serve.model", "train.data"},
    "train.collect": {"serve.model", "train.data", "train.evaluation"},
    "train.fit": {"serve.model", "train.data", "train.embedders", "train.evaluation"},
    "train.loop": {"serve.model", "train.data", "train.embedders", "train.evaluation", "train.fit"},
    "train.bench": {
        "serve.model",
        "train.data",
        "train.embedders",
        "train.evaluation",
        "train.fit",
        "train.loop",
        "train.collect",
    },
}
ANYTHING = {"train", "train.commands"}  # the console script and its subcommands sit on top


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, ["serve", "train"])


def test_no_import_circles(graph):
    assert cycles(graph) == []


def test_serve_never_imports_train(graph):
    leaks = {m: sorted(d for d in deps if d.startswith("train")) for m, deps in graph.items()}
    assert {m: d for m, d in leaks.items() if m.startswith("serve") and d} == {}


def test_every_module_sits_in_a_room(graph):
    rooms = set(MAY_IMPORT) | ANYTHING
    assert [m for m in graph if room(m, rooms) is None] == []


def test_each_room_imports_only_what_it_may(graph):
    rooms = set(MAY_IMPORT) | ANYTHING
    wrong = []
    for module, deps in sorted(graph.items()):
        own = room(module, rooms)
        if own in ANYTHING:
            continue
        for dep in sorted(deps):
            other = room(dep, rooms)
            if other != own and other not in MAY_IMPORT[own]:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_the_request_path_stays_clear_of_bench_and_gateway(graph):
    api = {m: deps for m, deps in graph.items() if m.startswith(("serve.api", "serve.model"))}
    assert [
        (m, d)
        for m, deps in api.items()
        for d in deps
        if d.startswith(("serve.bench", "serve.gateway"))
    ] == []


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("serve.client", "RungClient"),
        ("serve.app", "create_app"),
        ("serve.app", "Settings"),
        ("serve.gateway.client", "RungClient"),
        ("serve.gateway.aclient", "AsyncRungClient"),
        ("serve.gateway.plugin", "classifier"),  # config.yaml: classifier_plugin
        ("serve.gateway.hooks", "hook"),  # config.yaml: litellm_settings.callbacks
        ("serve.gateway.cascade", "cascade"),
    ],
)
def test_documented_import_paths_still_work(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_the_checker_sees_circles_and_lazy_imports(tmp_path: Path):
    """The graph includes imports inside functions, and a circle through one is reported."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text(
        textwrap.dedent(
            """
            def f():
                from pkg import c
                return c
            """
        )
    )
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.b"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
