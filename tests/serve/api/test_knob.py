"""The per-request `quality` knob, the utility answer's fields, and old threshold bundles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve.api.app import create_app
from serve.api.settings import Settings
from serve.model.runtime import Router, decide
from tests.support.tiny_data import rows

TEXTS = [r["text"] for r in rows()]


@pytest.fixture
def make_client() -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(model: Path) -> TestClient:
        client = TestClient(create_app(Settings(model=model, poll_seconds=0)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def post(client: TestClient, body: Any, path: str = "/classify") -> Any:
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def test_quality_maps_through_the_bundle_table_and_more_quality_never_costs_less(
    make_client, tiny_bundles
):
    client = make_client(tiny_bundles["a"])
    router = Router.load(tiny_bundles["a"])
    grid = [0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
    for text in TEXTS[::4]:
        costs = []
        for q in grid:
            body = post(client, {"text": text, "quality": q}).json()
            assert body["rule"] == "utility" and body["quality"] == q
            assert body["lambda"] == router.policy.setting_for(q)
            assert body["cost_usd"] > 0
            costs.append(body["cost_usd"])
        assert all(b >= a for a, b in zip(costs, costs[1:], strict=False)), (text, costs)


def test_threshold_on_a_utility_bundle_uses_the_threshold_rule(make_client, tiny_bundles):
    client = make_client(tiny_bundles["a"])
    body = post(client, {"text": "hi there!", "threshold": 1.0}).json()
    assert body["rule"] == "threshold" and body["threshold"] == 1.0 and body["lambda"] is None
    assert body["tier"] == "large" and body["quality"] is None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"text": "hi", "quality": 0.9, "threshold": 0.5}, ["body", "quality"]),
        ({"text": "hi", "quality": 0.0}, ["body", "quality"]),
        ({"text": "hi", "quality": 1.5}, ["body", "quality"]),
        ({"text": "hi", "quality": "best"}, ["body", "quality"]),
    ],
)
def test_bad_quality_settings_get_a_422_naming_the_field(make_client, tiny_bundles, body, loc):
    r = post(make_client(tiny_bundles["a"]), body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


def test_a_batch_with_mixed_settings_answers_as_single_requests(make_client, tiny_bundles):
    client = make_client(tiny_bundles["a"])
    items = [
        {"text": TEXTS[0]},
        {"text": TEXTS[13], "quality": 0.6},
        {"text": TEXTS[30], "threshold": 0.4, "min_tier": 1},
        {"text": TEXTS[20], "quality": 1.0, "max_tier": "medium"},
    ]
    got = post(client, {"items": items}, "/classify/batch").json()["items"]
    for item, answer in zip(items, got, strict=True):
        single = post(client, item).json()
        for key in ("tier", "rule", "quality", "threshold", "lambda"):
            assert answer[key] == single[key]
        assert answer["cost_usd"] == pytest.approx(single["cost_usd"], rel=1e-5)


def test_an_old_threshold_bundle_loads_and_decides_exactly_as_before(make_client, legacy_bundle):
    router = Router.load(legacy_bundle)
    assert router.manifest.schema_version == 1 and router.policy is None
    client = make_client(legacy_bundle)
    p = router.p_sufficient(TEXTS)
    before = decide(p, router.manifest.threshold)  # the schema-1 rule
    for text, tier, probs in zip(TEXTS, before, p, strict=True):
        body = post(client, {"text": text}).json()
        assert body["tier_index"] == tier
        np.testing.assert_allclose(list(body["p_sufficient"].values()), probs, atol=1e-6)
        assert body["rule"] == "threshold" and body["threshold"] == router.manifest.threshold
        assert body["p_correct"] is None and body["quality"] is None and body["lambda"] is None
        assert body["cost_usd"] > 0  # the ladder's prices x tokens + output_tokens
    r = post(client, {"text": "hi", "quality": 0.9})
    assert r.status_code == 422 and "no quality calibration table" in r.text
    assert post(client, {"text": "hi", "threshold": 0.0}).json()["tier"] == "small"
