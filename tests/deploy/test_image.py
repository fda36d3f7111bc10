"""The container image, built here with buildah (`deploy/image/build.sh`, what `make image`
runs) and run with `buildah run --isolation chroot`: the server inside answers /readyz and
/classify from the host, runs as the non-root user, follows a pointer moved on the volume,
carries no torch or sklearn, and the image stays under its size budget.

Needs root, buildah and debootstrap; skipped without them unless RUNG_REQUIRE_DEPLOY_TOOLS=1
(CI sets it). A cold build takes a few minutes (the Debian base, then the pip install).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.image_tools import DEPLOY, REQUIRE_ENV, need, project_version
from tests.support.paths import ROOT
from tests.support.servers import free_port

pytestmark = pytest.mark.image

TAG = f"localhost/rung-test-{os.getpid()}"  # buildah's storage is shared by the machine
MAX_IMAGE_MB = 400
SERVER_UID = 10001
TRAINING_ONLY = ("torch", "sklearn", "sentence_transformers", "transformers", "skl2onnx", "joblib")
SERVING = ("onnxruntime", "tokenizers", "numpy", "fastapi", "uvicorn", "serve")


def run(*cmd: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False
    )
    assert out.returncode == 0, f"{' '.join(cmd[:3])} ...: {(out.stdout + out.stderr)[-3000:]}"
    return out.stdout


@dataclass(frozen=True)
class Images:
    server: str
    default: str


def build_context(root: Path, bundle: Path) -> Path:
    """What build.sh sees in the repository, with `bundle` as models/default."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "training")
    for name in ("pyproject.toml", "README.md", ".containerignore"):
        shutil.copy2(ROOT / name, root / name)
    for name in ("serve", "train"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    shutil.copytree(bundle, root / "models" / "default", ignore=ignore)
    return root


@pytest.fixture(scope="module")
def images(tiny_bundles, tmp_path_factory) -> Iterator[Images]:
    need("buildah", "debootstrap")
    if os.geteuid() != 0:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail("building images needs root (debootstrap, buildah's storage)")
        pytest.skip("building images needs root (debootstrap, buildah's storage)")
    built = Images(server=f"{TAG}:server", default=f"{TAG}:default")
    script = str(DEPLOY / "image" / "build.sh")
    run("bash", script, "server", timeout=1800, env={**os.environ, "IMAGE": built.server})
    context = build_context(tmp_path_factory.mktemp("context"), tiny_bundles["a"])
    env = {**os.environ, "IMAGE": built.default, "CONTEXT": str(context)}
    run("bash", script, "default", timeout=900, env=env)
    used = run("buildah", "containers", "--format", "{{.ImageName}}").split()
    assert not {built.server, built.default} & set(used), "the build left a working container"
    yield built
    remove_leftover_containers()
    for image in (built.server, built.default):
        subprocess.run(["buildah", "rmi", image], capture_output=True, timeout=120, check=False)


def inspect(image: str) -> dict[str, Any]:
    return json.loads(run("buildah", "inspect", "--type", "image", image))


def size_mb(image: str) -> float:
    """buildah's human size ("375 MB", decimal units) in MB."""
    text = run("buildah", "images", "--format", "{{.Size}}", image).split("\n")[0].strip()
    number, unit = re.fullmatch(r"([0-9.]+)\s*([kMG]?B)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]


CONTAINER_PREFIX = f"rung-test-{os.getpid()}-"


@contextmanager
def container(image: str) -> Iterator[str]:
    name = f"{CONTAINER_PREFIX}{time.monotonic_ns()}"
    run("buildah", "from", "--name", name, image)
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=60, check=False)


def remove_leftover_containers() -> None:
    """Whatever an interrupted test left behind, so the test images can be removed."""
    names = run("buildah", "containers", "--format", "{{.ContainerName}}").split()
    for name in names:
        if name.startswith(CONTAINER_PREFIX):
            subprocess.run(["buildah", "rm", name], capture_output=True, timeout=60, check=False)


def in_image(image: str, *cmd: str, models: Path | None = None) -> subprocess.CompletedProcess[str]:
    mounts = ["-v", f"{models}:/models"] if models else []
    with container(image) as name:
        return subprocess.run(
            ["buildah", "run", "--isolation", "chroot", *mounts, name, "--", *cmd],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def server_pid(port: int) -> int:
    """The Python process of `rung serve ... --port PORT` (the host sees the chroot's pids)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/python") and b"serve" in argv and str(port).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no rung server process on port {port}")


def proc_status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@dataclass(frozen=True)
class Running:
    url: str
    port: int
    pid: int
    cold_start_s: float
    container: str


@contextmanager
def serving(image: str, volume: Path | None = None) -> Iterator[Running]:
    """The image's own entry point and command (with a free port), under buildah run."""
    config = inspect(image)["OCIv1"]["config"]
    port = free_port()
    command = [*config["Entrypoint"], *config["Cmd"], "--port", str(port)]
    mounts = ["-v", f"{volume}:/models:ro"] if volume else []
    with container(image) as name, tempfile.TemporaryFile() as log:
        start = time.monotonic()
        proc = subprocess.Popen(
            ["buildah", "run", "--isolation", "chroot", *mounts, name, "--", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = start + 90
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise AssertionError(log.read().decode()[-3000:])
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server in the image not ready in 90 s"
                time.sleep(0.1)
            yield Running(url, port, server_pid(port), time.monotonic() - start, name)
        finally:
            with suppress(AssertionError, ProcessLookupError):
                os.kill(server_pid(port), signal.SIGTERM)  # as the kubelet stops a pod
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


def written_files(name: str) -> set[str]:
    """Paths in the container's own overlay layer: what processes in it wrote."""
    mount = Path(json.loads(run("buildah", "inspect", name))["MountPoint"])
    upper = mount.parent / "diff"
    assert upper.is_dir(), f"no overlay upper dir at {upper}"
    return {str(p.relative_to(upper)) for p in upper.rglob("*")}


def deployment_memory_request() -> float:
    import yaml

    docs = yaml.safe_load_all((DEPLOY / "k8s" / "base" / "deployment.yaml").read_text())
    (deploy,) = [d for d in docs if d and d["kind"] == "Deployment"]
    request = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", request["memory"]).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": 1.0, "Gi": 1024.0}[unit]


# ---- the tests --------------------------------------------------------------------------------


def test_image_is_small_and_configured_as_documented(images):
    mb = size_mb(images.server)
    print(f"\nimage {images.server}: {mb:.0f} MB")
    assert mb < MAX_IMAGE_MB
    doc = inspect(images.server)
    config = doc["OCIv1"]["config"]
    assert config["User"] == f"{SERVER_UID}:{SERVER_UID}"
    assert config["Entrypoint"] == ["rung"]
    assert config["Cmd"][:3] == ["serve", "--models-dir", "/models"]
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Labels"]["org.opencontainers.image.version"] == project_version()
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["ORT_DISABLE_TELEMETRY"] == "1"
    assert not {k for k in env if k.startswith(("PIP_", "SSL_", "REQUESTS_CA"))}
    health = doc["Docker"]["config"]["Healthcheck"]
    assert health["Test"][0] == "CMD" and any("/healthz" in part for part in health["Test"])


def test_image_holds_the_server_and_no_training_stack(images):
    probe = (
        "import importlib.util, json, os; "
        f"names = {TRAINING_ONLY + SERVING!r}; "
        "print(json.dumps({'found': [n for n in names if importlib.util.find_spec(n)], "
        "'uid': os.getuid(), 'secrets': os.path.exists('/run/secrets/ca')}))"
    )
    out = in_image(images.server, "python3", "-c", probe)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(seen["found"]) == sorted(SERVING)  # torch, sklearn & co. are absent
    assert seen["uid"] == SERVER_UID
    assert seen["secrets"] is False  # the CA bundle was a build secret, not a layer


def test_server_in_the_image_serves_the_volume_and_follows_the_pointer(images, models_dir):
    from serve.model.bundle import read_manifest
    from serve.model.registry import set_current

    os.chmod(models_dir, 0o755)
    with serving(images.server, volume=models_dir) as srv:
        print(f"\ncold start to /readyz 200 under buildah run: {srv.cold_start_s:.2f} s")
        assert proc_status(srv.pid, "Uid").split()[:2] == [str(SERVER_UID)] * 2
        ready = httpx.get(f"{srv.url}/readyz", timeout=5).json()
        assert ready["path"] == "/models/a" and ready["ready"] is True
        for _ in range(200):
            r = httpx.post(f"{srv.url}/classify", json={"text": "Translate hello."}, timeout=5)
            assert r.status_code == 200
        assert r.json()["tier"] in ("small", "medium", "large")
        assert r.json()["model"]["version"] == read_manifest(models_dir / "a").version
        bad = httpx.post(f"{srv.url}/classify", content=b"{not json", timeout=5)
        assert bad.status_code == 422
        rss_mb = int(proc_status(srv.pid, "VmRSS").split()[0]) / 1024
        print(f"server RSS after 200 requests: {rss_mb:.0f} MiB")
        assert rss_mb < deployment_memory_request()

        # A promotion on the shared volume reaches the replica without a restart.
        want = read_manifest(models_dir / "b").version
        set_current(models_dir, "b")
        deadline = time.monotonic() + 20
        while httpx.get(f"{srv.url}/readyz", timeout=5).json()["model"]["version"] != want:
            assert time.monotonic() < deadline, "the server did not follow the pointer"
            time.sleep(0.2)
        r = httpx.post(f"{srv.url}/classify", json={"text": "Translate hello."}, timeout=5)
        assert r.json()["model"]["version"] == want

        # Nothing but buildah's own marker was written to the image's filesystem, so the
        # server runs on a read-only root filesystem (readOnlyRootFilesystem in deploy/k8s).
        assert written_files(srv.container) <= {"run", "run/.containerenv"}

        # The HEALTHCHECK's own command passes against this server.
        test = inspect(images.server)["Docker"]["config"]["Healthcheck"]["Test"][1:]
        test = [part.replace(":8000/", f":{srv.port}/") for part in test]
        assert in_image(images.server, *test).returncode == 0
    assert in_image(images.server, *test).returncode != 0  # and fails with no server


def test_baked_image_answers_with_no_volume(images, tiny_bundles):
    from serve.model.bundle import read_manifest

    with serving(images.default) as srv:
        ready = httpx.get(f"{srv.url}/readyz", timeout=5).json()
        assert ready["path"] == "/models/default"
        r = httpx.post(
            f"{srv.url}/classify",
            json={"messages": [{"role": "user", "content": "Summarise this contract."}]},
            timeout=5,
        )
        assert r.status_code == 200
        assert r.json()["model"]["version"] == read_manifest(tiny_bundles["a"]).version


def test_server_image_without_a_bundle_says_what_is_missing(images):
    config = inspect(images.server)["OCIv1"]["config"]
    out = in_image(images.server, *config["Entrypoint"], *config["Cmd"])
    assert out.returncode == 2
    assert "no model bundle at /models/current" in out.stderr
    assert "Traceback" not in out.stderr


def test_models_admin_workflow_in_the_image(images, tiny_bundles, tmp_path):
    """What docs/containers.md tells an operator to run in the rung-models-admin pod, on a
    volume the image's user owns (fsGroup does this in Kubernetes)."""
    from serve.model.registry import current_target, set_current

    models_dir = tmp_path / "models"
    for name in ("a", "b"):  # real copies: the volume changes owner below
        shutil.copytree(tiny_bundles[name], models_dir / name)
    set_current(models_dir, "a")

    incoming = models_dir / ".incoming-v2"
    shutil.copytree(models_dir / "b", incoming)  # as `kubectl cp` would
    broken = models_dir / ".incoming-broken"  # as a half-copied or corrupted download
    shutil.copytree(models_dir / "b", broken, copy_function=shutil.copy)
    with open(broken / "classifier.onnx", "ab") as fh:
        fh.write(b"tampered")
    subprocess.run(["chown", "-R", f"{SERVER_UID}:{SERVER_UID}", str(models_dir)], check=True)

    check = in_image(
        images.server,
        "rung",
        "serve",
        "--check",
        "--model",
        "/models/.incoming-v2",
        models=models_dir,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok: ")
    refused = in_image(
        images.server,
        "rung",
        "serve",
        "--check",
        "--model",
        "/models/.incoming-broken",
        models=models_dir,
    )
    assert refused.returncode == 1
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("rung serve: error:")]
    assert "classifier.onnx does not match its sha256" in line
    assert "Traceback" not in refused.stderr
    # promote runs the same checks itself: a tampered bundle never becomes current
    out = in_image(
        images.server, "mv", "/models/.incoming-broken", "/models/bad", models=models_dir
    )
    assert out.returncode == 0, out.stderr
    out = in_image(images.server, "rung", "models", "promote", "bad", models=models_dir)
    assert out.returncode == 1 and "refused bad" in out.stderr
    assert current_target(models_dir) == (models_dir / "a").resolve()

    steps = (
        ("mv", "/models/.incoming-v2", "/models/v2"),
        ("rung", "models", "promote", "v2"),  # from WORKDIR /, ./models is the volume
    )
    for step in steps:
        out = in_image(images.server, *step, models=models_dir)
        assert out.returncode == 0, (step, out.stderr)
    assert current_target(models_dir) == (models_dir / "v2").resolve()
    out = in_image(images.server, "rung", "models", "rollback", models=models_dir)
    assert out.returncode == 0, out.stderr
    assert current_target(models_dir) == (models_dir / "a").resolve()
