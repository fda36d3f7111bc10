"""The Kubernetes manifests: they render offline, validate against the Kubernetes schemas, and
say what the image and the app actually do (routes, port, user, command, settings)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.deploy.image_tools import (
    KUSTOMIZATIONS,
    containerfile,
    one,
    project_version,
    render,
    selects,
    stage_config,
)

SCHEMA_VERSIONS = ("1.29", "1.37")  # the oldest Kubernetes still in wide use, and the newest
IMAGE_UID = 10001


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(path) for name, path in KUSTOMIZATIONS.items()}


@pytest.fixture(scope="module")
def base(rendered) -> list[dict[str, Any]]:
    return rendered["base"]


class Routes:
    """`(path, "GET") in routes`: the app answers a GET there with anything but 404 / 405
    (no model is loaded, so /readyz says 503: the route exists, which is what is checked)."""

    def __init__(self) -> None:
        from fastapi.testclient import TestClient

        from serve.api.app import create_app
        from serve.api.settings import Settings

        self.client = TestClient(create_app(Settings(poll_seconds=0)))

    def __contains__(self, route: tuple[str, str]) -> bool:
        path, method = route
        return self.client.request(method, path).status_code not in (404, 405)


@pytest.fixture(scope="module")
def routes() -> Routes:
    return Routes()


def test_routes_check_can_fail(routes):
    assert ("/healthz", "GET") in routes
    assert ("/health", "GET") not in routes
    assert ("/classify", "GET") not in routes  # POST only


def server_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "rung")["spec"]["template"]


def server_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = server_pod(docs)["spec"]["containers"]
    return c


def quantity(q: str) -> float:
    """Kubernetes quantities in bytes or cores."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q)).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


# ---- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_rendered_objects_validate_against_the_kubernetes_schemas(rendered, name):
    import kubernetes_validate

    checked = 0
    for doc in rendered[name]:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked by test_servicemonitor_scrapes_the_metrics_port
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 5


def test_the_schema_check_can_fail(base):
    """A misspelt field and a wrong type are both caught, so a pass above means something."""
    import kubernetes_validate

    bad = copy.deepcopy(one(base, "Deployment", "rung"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, SCHEMA_VERSIONS[-1], strict=True)
    bad = copy.deepcopy(one(base, "Deployment", "rung"))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, SCHEMA_VERSIONS[-1], strict=True)


def test_the_base_holds_every_part(base):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in base)
    assert kinds == [
        ("ConfigMap", kinds[0][1]),
        ("Deployment", "rung"),
        ("Deployment", "rung-models-admin"),
        ("HorizontalPodAutoscaler", "rung"),
        ("PersistentVolumeClaim", "rung-models"),
        ("PodDisruptionBudget", "rung"),
        ("Service", "rung"),
        ("ServiceAccount", "rung"),
    ]
    assert kinds[0][1].startswith("rung-settings-")  # hashed: a settings change rolls pods


# ---- probes, port, command and image match the app and the Containerfile ---------------------


def test_probes_point_at_real_get_routes(base, routes):
    c = server_container(base)
    paths = {
        kind: c[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths["readinessProbe"] == "/readyz"
    assert paths["livenessProbe"] == "/healthz"
    for path in paths.values():
        assert (path, "GET") in routes
    for kind in paths:
        assert c[kind]["httpGet"]["port"] == "http"
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 30


def test_port_command_and_user_match_the_containerfile(base):
    config = stage_config(containerfile(), "server")
    c = server_container(base)
    exposed = int(config["EXPOSE"].args)
    (port,) = c["ports"]
    assert port == {"name": "http", "containerPort": exposed, "protocol": "TCP"}
    cmd = config["CMD"].exec_form()
    assert c["args"] == cmd
    assert cmd[cmd.index("--port") + 1] == str(exposed)
    assert config["ENTRYPOINT"].exec_form() == ["rung"] and "command" not in c
    uid = int(config["USER"].args.split(":")[0])
    assert uid == IMAGE_UID
    assert server_pod(base)["spec"]["securityContext"]["runAsUser"] == uid
    assert c["securityContext"]["runAsUser"] == uid
    annotations = server_pod(base)["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(exposed)


def test_the_image_is_the_one_make_image_builds(rendered):
    version = project_version()
    assert server_container(rendered["base"])["image"] == f"rung:{version}"
    assert server_container(rendered["demo"])["image"] == f"rung:{version}-default"
    admin = one(rendered["base"], "Deployment", "rung-models-admin")
    assert admin["spec"]["template"]["spec"]["containers"][0]["image"] == f"rung:{version}"


def test_metrics_annotation_and_servicemonitor_scrape_a_real_route(rendered, routes):
    pod = server_pod(rendered["base"])
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert (pod["metadata"]["annotations"]["prometheus.io/path"], "GET") in routes
    docs = rendered["prometheus-operator"]
    assert "prometheus.io/scrape" not in server_pod(docs)["metadata"].get("annotations", {})
    monitor = one(docs, "ServiceMonitor", "rung")
    service = one(docs, "Service", "rung")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert not selects(
        monitor["spec"]["selector"]["matchLabels"], {"app.kubernetes.io/name": "rung"}
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert (endpoint["path"], "GET") in routes


def test_servicemonitor_scrapes_the_metrics_port(rendered):
    monitor = one(rendered["prometheus-operator"], "ServiceMonitor", "rung")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    assert set(monitor["spec"]["endpoints"][0]) <= {"port", "path", "interval", "scrapeTimeout"}


# ---- security and resources ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["rung", "rung-models-admin"])
def test_pods_run_locked_down(base, name):
    spec = one(base, "Deployment", name)["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc.get("privileged", False) is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert "memory" in c["resources"]["limits"]


def test_server_resources_leave_room_for_a_reload(base):
    """A reload holds the old and the new bundle at once, so the limit is at least twice the
    request, and the request covers the measured RSS (docs/containers.md; test_image checks
    the request against the RSS it measures in the image)."""
    res = server_container(base)["resources"]
    assert quantity(res["limits"]["memory"]) >= 2 * quantity(res["requests"]["memory"])
    assert quantity(res["requests"]["cpu"]) == quantity(res["limits"]["cpu"]) == 1.0


def test_models_volume_is_shared_and_read_only_for_the_servers(base):
    pvc = one(base, "PersistentVolumeClaim", "rung-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    server = server_pod(base)["spec"]
    admin = one(base, "Deployment", "rung-models-admin")["spec"]["template"]["spec"]
    for spec, read_only in ((server, True), (admin, False)):
        (vol,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert vol["persistentVolumeClaim"]["claimName"] == "rung-models"
        (mount,) = [
            m for c in spec["containers"] for m in c["volumeMounts"] if m["name"] == vol["name"]
        ]
        assert mount["mountPath"] == "/models"
        assert mount.get("readOnly", False) is read_only
        assert spec["securityContext"]["fsGroup"] == IMAGE_UID  # the admin can write


# ---- settings and secrets are real settings ------------------------------------------------


def test_configmap_keys_are_settings_the_server_reads(base):
    from serve.api.settings import Settings

    (cm,) = [d for d in base if d["kind"] == "ConfigMap"]
    env = cm["data"]
    known = {f"RUNG_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert not {"RUNG_MODEL", "RUNG_MODELS_DIR"} & set(env)  # the command sets --models-dir
    assert not {"RUNG_API_KEY", "RUNG_ADMIN_TOKEN"} & set(env)  # secrets come from a Secret
    Settings(**{k.removeprefix("RUNG_").lower(): v for k, v in env.items()})  # values parse
    c = server_container(base)
    assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]


def test_secrets_come_from_a_secret_reference(base):
    from serve.api.settings import Settings

    env = {e["name"]: e for e in server_container(base)["env"]}
    assert set(env) == {"RUNG_API_KEY", "RUNG_ADMIN_TOKEN"}
    for name, entry in env.items():
        assert name.removeprefix("RUNG_").lower() in Settings.model_fields
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "rung-secrets" and "value" not in entry


# ---- scaling, disruption, service wiring -------------------------------------------------


def test_service_hpa_and_pdb_target_the_servers_only(base):
    server_labels = server_pod(base)["metadata"]["labels"]
    admin_labels = one(base, "Deployment", "rung-models-admin")["spec"]["template"]["metadata"][
        "labels"
    ]
    service = one(base, "Service", "rung")
    pdb = one(base, "PodDisruptionBudget", "rung")
    deployment = one(base, "Deployment", "rung")
    for selector in (
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"],
    ):
        assert selects(selector, server_labels)
        assert not selects(selector, admin_labels)
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    hpa = one(base, "HorizontalPodAutoscaler", "rung")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rung",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    rollout = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rollout["maxUnavailable"] == 0


def test_demo_overlay_serves_the_baked_bundle_without_a_volume(rendered):
    docs = rendered["demo"]
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert not [d for d in docs if d["metadata"]["name"] == "rung-models-admin"]
    pod = server_pod(docs)["spec"]
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == ["/tmp"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "rung-demo"
    }
