"""The Containerfile and the build scripts, read without building: the base is a build
argument, the CA bundle is a build secret of the install step only, the server runs as a
non-root user, and the health check and command use the app's real route and port."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.image_tools import (
    CONTAINERFILE,
    DEPLOY,
    containerfile,
    stage_config,
)
from tests.support.paths import ROOT

SCRIPTS = [DEPLOY / "image" / "build.sh", DEPLOY / "image" / "debian-base.sh", ROOT / ".ci" / "run"]


@pytest.fixture(scope="module")
def instructions():
    return containerfile()


def test_base_image_is_a_build_argument_defaulting_to_the_official_slim_python(instructions):
    first = instructions[0]
    assert (first.stage, first.keyword, first.args) == ("", "ARG", "BASE=python:3.11-slim")
    froms = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    stages = {i.stage for i in instructions}
    assert froms[0] == "${BASE}"
    assert all(f == "${BASE}" or f in stages for f in froms)  # nothing else is pulled


def test_dependencies_install_before_the_code_arrives(instructions):
    """So a change to serve/ or train/ rebuilds one small layer, not the whole install."""
    build = [i for i in instructions if i.stage == "build"]
    deps = next(n for n, i in enumerate(build) if "pip install" in i.args)
    copied = [i.args for i in build[:deps] if i.keyword == "COPY"]
    assert copied == ["pyproject.toml /src/"]
    code = next(n for n, i in enumerate(build) if i.args.startswith("serve "))
    assert "--no-deps" in next(i.args for i in build[code:] if "pip install" in i.args)


def test_targets_are_server_by_default_and_default_with_the_bundle(instructions):
    stages = [i.stage for i in instructions if i.keyword == "FROM"]
    assert stages[-1] == "server"  # `docker build .` gives the volume variant
    assert "default" in stages
    baked = [i.args for i in instructions if i.stage == "default" and i.keyword == "COPY"]
    assert baked == ["models/default /models/default"]


def test_ca_bundle_is_a_secret_of_the_install_steps_only(instructions):
    installs = [i for i in instructions if "pip install" in i.args]
    mounts = [i for i in instructions if "--mount=type=secret" in i.args]
    assert len(installs) == 2 and mounts == installs  # dependencies, then rung itself
    for step in mounts:
        assert step.keyword == "RUN" and step.stage == "build"
        assert "--mount=type=secret,id=ca " in step.args
        assert "PIP_CERT=/run/secrets/ca" in step.args
    for i in instructions:
        assert "PIP_CERT" not in i.args or i in mounts
        if i.keyword in ("COPY", "ADD"):
            assert not any(word in i.args for word in ("ca-certificates", ".pem", ".crt"))
    # the runtime stages start again from the base and take only the venv from the build stage
    copies = [i.args for i in instructions if i.stage == "runtime" and i.keyword == "COPY"]
    assert copies == ["--from=build /opt/rung /opt/rung"]


@pytest.mark.parametrize("stage", ["server", "default"])
def test_server_runs_as_a_non_root_user_on_the_exposed_port(instructions, stage):
    config = stage_config(instructions, stage)
    user = config["USER"].args.split(":")
    assert user[0].isdigit() and int(user[0]) >= 1000
    port = config["EXPOSE"].args
    cmd = config["CMD"].exec_form()
    assert config["ENTRYPOINT"].exec_form() == ["rung"]
    assert cmd[:3] == ["serve", "--models-dir", "/models"]
    assert cmd[cmd.index("--port") + 1] == port
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"  # reachable from outside the container
    health = config["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in health.args


def test_health_check_route_exists(instructions):
    """The path the HEALTHCHECK asks for answers 200 with no model loaded (liveness only)."""
    import re

    from fastapi.testclient import TestClient

    from serve.api.app import create_app
    from serve.api.settings import Settings

    health = stage_config(instructions, "server")["HEALTHCHECK"].args
    (path,) = re.findall(r"http://127\.0\.0\.1:\d+(/[a-z]+)", health)
    assert TestClient(create_app(Settings(poll_seconds=0))).get(path).status_code == 200


def test_build_context_is_the_server_source_only():
    lines = [
        line.strip()
        for line in (ROOT / ".containerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything is excluded, then the few things the image needs
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "README.md", "serve", "train", "models/default"}
    assert "models/default/training/" in lines  # joblib heads are never served
    docker = ROOT / ".dockerignore"
    assert docker.is_symlink() and docker.resolve() == (ROOT / ".containerignore").resolve()
    for i in containerfile(CONTAINERFILE):
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            source = i.args.split()[0]
            assert source.rstrip("/") in included, source


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script: Path):
    out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert os.access(script, os.X_OK)


def test_build_script_refuses_bad_requests_in_one_line(tmp_path):
    script = str(DEPLOY / "image" / "build.sh")
    env = {**os.environ, "CONTEXT": str(tmp_path)}
    for target, words in (("nightly", "unknown target"), ("default", "missing")):
        out = subprocess.run(
            ["bash", script, target], capture_output=True, text=True, env=env, timeout=60
        )
        assert out.returncode == 2
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("build.sh: ")
        if target == "nightly" or "buildah" not in line:
            assert words in line
