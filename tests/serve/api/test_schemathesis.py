"""Schemathesis against the app: every request the OpenAPI document calls valid is accepted,
every invalid one refused with 4xx, responses match the document, never a 5xx.

All of schemathesis's checks run (positive-data acceptance included), in both generation modes,
through the ASGI transport with the lifespan (the tiny bundle is loaded). Bounded by
max_examples per operation so the module takes well under two minutes on a shared 2-core box.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

from serve.api.app import create_app
from serve.api.settings import Settings

MAX_EXAMPLES = 30
# Every check stays on with its defaults, except that 413 (text or batch over the limit the
# document states as maxLength / maxItems) also counts as refusing negative data.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
            }
        }
    }
)


@pytest.fixture(scope="module")
def api_schema(tiny_bundles):
    app = create_app(Settings(model=tiny_bundles["a"], poll_seconds=0, log_requests=False))
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's lazy loader reads `node._nodeid`, which pytest 9 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


SENT: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def _every_operation_was_exercised():
    """The run must have sent real requests to every operation, or it proves nothing."""
    yield
    print(f"schemathesis sent {sum(SENT.values())} requests: {SENT}")
    assert set(SENT) >= OPERATIONS, SENT
    assert sum(SENT.values()) >= 100, SENT


OPERATIONS = {
    "POST /classify",
    "POST /classify/batch",
    "GET /healthz",
    "GET /readyz",
    "GET /model",
    "GET /metrics",
    "POST /admin/reload",
}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_app_keeps_every_promise_of_its_openapi_document(case):
    case.call_and_validate()
    key = f"{case.method.upper()} {case.path}"
    SENT[key] = SENT.get(key, 0) + 1
