"""The HTTP API through TestClient with the lifespan: answers, every error path, auth, docs."""

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
from serve.model.runtime import Router

HARD = "Prove that there are infinitely many primes congruent to 3 mod 4, rigorously."


@pytest.fixture(params=[True, False], ids=["fast-lane", "fastapi-route"])
def make_client(tiny_bundles: dict[str, Path], request: pytest.FixtureRequest) -> Iterator[Any]:
    """Apps with /classify on the ASGI fast lane and on the plain FastAPI route: every API
    test runs against both, so they cannot drift apart."""
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        settings.setdefault("model", tiny_bundles["a"])
        settings.setdefault("poll_seconds", 0)
        settings.setdefault("fast_lane", request.param)
        client = TestClient(create_app(Settings(**settings)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Any) -> TestClient:
    return make_client()


def post(
    client: TestClient, body: Any, path: str = "/classify", headers: dict[str, str] | None = None
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        path, content=raw, headers={"content-type": "application/json", **(headers or {})}
    )


def test_classify_answers_with_the_documented_shape(client, tiny_bundles):
    r = post(client, {"text": "hi there!"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "tier",
        "tier_index",
        "p_sufficient",
        "p_correct",
        "cost_usd",
        "rule",
        "quality",
        "threshold",
        "lambda",
        "model",
        "explore",
    }
    router = Router.load(tiny_bundles["a"])
    est = router.estimates(["hi there!"])
    assert list(body["p_sufficient"]) == ["small", "medium", "large"]
    np.testing.assert_allclose(list(body["p_sufficient"].values()), est.p_sufficient[0], atol=1e-6)
    np.testing.assert_allclose(list(body["p_correct"].values()), est.p_correct[0], atol=1e-6)
    # The default: expected utility at the bundle's calibrated lambda.
    policy = router.policy
    assert body["rule"] == "utility" and body["threshold"] is None
    assert body["lambda"] == policy.value and body["quality"] == policy.default_quality == 0.95
    utility = est.p_correct[0] - policy.value * est.cost[0]
    want = int(np.argmax(utility))
    assert body["tier_index"] == want and body["tier"] == router.tier_names[want]
    assert body["cost_usd"] == pytest.approx(est.cost[0][want], rel=1e-6)
    assert body["model"] == {"name": "a", "version": router.manifest.version}
    assert body["explore"] is False


def test_messages_classify_the_last_user_turn_and_unknown_fields_are_ignored(client):
    direct = post(client, {"text": HARD}).json()
    chat = {
        "model": "gpt-4o",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": [{"type": "text", "text": HARD}]},
        ],
    }
    r = post(client, chat)
    assert r.status_code == 200
    assert r.json()["p_sufficient"] == direct["p_sufficient"]


def test_threshold_and_tier_clamps_apply_per_request(client):
    loose = post(client, {"text": HARD, "threshold": 0.0}).json()
    assert loose["tier"] == "small" and loose["threshold"] == 0.0
    strict = post(client, {"text": "hi there!", "threshold": 1.0}).json()
    assert strict["tier"] == "large"
    floor = post(client, {"text": "hi there!", "threshold": 0.0, "min_tier": "medium"}).json()
    assert floor["tier"] == "medium"
    ceiling = post(client, {"text": "hi", "threshold": 1.0, "max_tier": 1}).json()
    assert ceiling["tier"] == "medium" and ceiling["tier_index"] == 1


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b"{not json", ["body"], "json_invalid"),
        (b"", ["body"], "json_invalid"),
        (b"[1, 2]", ["body"], "model_type"),
        ({"text": 42}, ["body", "text"], "string_type"),
        ({"text": "hi", "threshold": "high"}, ["body", "threshold"], "float_parsing"),
        ({"text": "hi", "threshold": 1.5}, ["body", "threshold"], "less_than_equal"),
        ({"messages": "hello"}, ["body", "messages"], "list_type"),
        ({}, ["body", "text"], "missing"),
        ({"threshold": 0.5}, ["body", "text"], "missing"),
        ({"text": ""}, ["body", "text"], "value_error"),
        ({"text": " \n\t "}, ["body", "text"], "value_error"),
        (
            {"messages": [{"role": "system", "content": "only a system turn"}]},
            ["body", "messages"],
            "value_error",
        ),
        ({"messages": [{"role": "user", "content": "   "}]}, ["body", "messages"], "value_error"),
        ({"text": "hi", "messages": [{"role": "user", "content": "hi"}]}, ["body"], "value_error"),
        ({"text": "hi", "min_tier": "huge"}, ["body", "min_tier"], "value_error"),
        ({"text": "hi", "max_tier": 7}, ["body", "max_tier"], "value_error"),
        (
            {"text": "hi", "min_tier": "large", "max_tier": "small"},
            ["body", "max_tier"],
            "value_error",
        ),
    ],
)
def test_bad_input_is_422_naming_the_field(client, body, loc, kind):
    r = post(client, body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["type"] == kind
    assert "Traceback" not in r.text


def test_oversized_text_batch_and_body_are_413(make_client):
    client = make_client(max_text_chars=100, max_batch=3, max_body_bytes=2000)
    r = post(client, {"text": "x" * 101})
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body", "text"]
    chat = {"messages": [{"role": "user", "content": "y" * 150}]}
    assert post(client, chat).status_code == 413
    r = post(client, {"items": [{"text": "a"}] * 4}, "/classify/batch")
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body", "items"]
    r = post(client, {"items": [{"text": "a"}, {"text": "z" * 101}]}, "/classify/batch")
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body", "items", 1, "text"]
    r = post(client, {"text": "hi", "pad": "p" * 3000})
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body"]
    assert post(client, {"text": "x" * 100}).status_code == 200  # at the cap is fine


def test_long_text_is_truncated_at_the_token_cap_not_refused(make_client, tiny_bundles):
    cap = Router.load(tiny_bundles["a"]).manifest.embedder.token_cap
    client = make_client(max_text_chars=60_000)
    head = " ".join(f"word{i % 50} of a long contract clause" for i in range(cap))
    assert len(head.split()) > cap  # far more than `cap` tokens already
    a = post(client, {"text": head})
    b = post(client, {"text": head + " totally different ending " * 500})
    assert a.status_code == b.status_code == 200
    assert a.json()["p_sufficient"] == b.json()["p_sufficient"]  # only the first cap tokens count
    small = make_client(max_text_chars=60_000, token_cap=8)
    c = post(small, {"text": "one two three four five six seven eight nine ten"}).json()
    d = post(small, {"text": "one two three four five six seven eight other words"}).json()
    assert c["p_sufficient"] == d["p_sufficient"]
    assert small.get("/model").json()["token_cap"] == 8


def test_batch_keeps_order_and_matches_single_requests(client):
    texts = ["hi there!", HARD, "Write a SQL query for monthly spend per customer.", "thanks"]
    items = [{"text": t} for t in texts] + [
        {"text": "hi", "threshold": 1.0},
        {"messages": [{"role": "user", "content": HARD}]},
    ]
    r = post(client, {"items": items}, "/classify/batch")
    assert r.status_code == 200
    got = r.json()["items"]
    assert len(got) == len(items)
    for item, answer in zip(items, got, strict=True):
        single = post(client, item).json()
        assert answer["tier"] == single["tier"]
        np.testing.assert_allclose(
            list(answer["p_sufficient"].values()), list(single["p_sufficient"].values()), atol=1e-6
        )
    assert got[4]["tier"] == "large"
    r = post(client, {"items": []}, "/classify/batch")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "items"]
    r = post(client, {"items": [{"text": "ok"}, {"text": 3}]}, "/classify/batch")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "items", 1, "text"]


def test_api_key_is_off_by_default_and_enforced_when_set(client, make_client):
    assert post(client, {"text": "hi"}).status_code == 200
    locked = make_client(api_key="s3cret")
    assert post(locked, {"text": "hi"}).status_code == 401
    assert post(locked, {"text": "hi"}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        post(locked, {"text": "hi"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    )
    assert post(locked, {"text": "hi"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert post(locked, {"items": [{"text": "hi"}]}, "/classify/batch").status_code == 401
    assert locked.get("/healthz").status_code == 200  # probes stay open


def test_admin_reload_needs_a_configured_token(client, make_client):
    assert client.post("/admin/reload").status_code == 403  # no token configured: refused
    assert client.post("/admin/reload", headers={"Authorization": "Bearer x"}).status_code == 403
    admin = make_client(admin_token="t0ken")
    assert admin.post("/admin/reload").status_code == 401
    assert admin.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = admin.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 200 and r.json()["last_reload"]["reason"] == "POST /admin/reload"


def test_probes_model_summary_and_metrics(client, tiny_bundles):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["model"]["name"] == "a"
    assert len(ready["smoke_p_sufficient"]) == 3 and ready["last_refusal"] is None
    summary = client.get("/model").json()
    assert [t["name"] for t in summary["ladder"]] == ["small", "medium", "large"]
    assert {"threshold", "threshold_target", "metrics", "version", "embedder"} <= set(summary)
    post(client, {"text": "hi"})
    post(client, {"text": ""})
    text = client.get("/metrics").text
    assert 'rung_requests_total{route="/classify",status="200"} 1.0' in text
    assert 'rung_requests_total{route="/classify",status="422"} 1.0' in text
    assert "rung_request_duration_seconds_bucket" in text
    assert "rung_decisions_total{tier=" in text
    version = ready["model"]["version"]
    assert f'rung_model_info{{name="a",version="{version}"}} 1.0' in text


def test_each_app_has_its_own_metrics(make_client):
    one, two = make_client(), make_client()
    post(one, {"text": "hi"})
    assert 'route="/classify",status="200"' in one.get("/metrics").text
    assert 'route="/classify",status="200"' not in two.get("/metrics").text


def test_openapi_describes_every_field_with_examples(client):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in ("ClassifyRequest", "BatchRequest", "ClassifyResponse", "Message"):
        for field, spec in schemas[name]["properties"].items():
            assert spec.get("description") or "$ref" in json.dumps(spec), (name, field)
    assert schemas["ClassifyRequest"]["examples"]
    ops = doc["paths"]["/classify"]["post"]
    assert ops["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ClassifyRequest"
    )
    assert {"200", "413", "422"} <= set(ops["responses"])
    assert {"/classify/batch", "/healthz", "/readyz", "/model", "/metrics", "/admin/reload"} <= (
        set(doc["paths"])
    )


def test_an_internal_failure_is_a_json_500_without_a_traceback(client, monkeypatch):
    router = client.app.state.ctx.holder.current.router

    def boom(*args: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(router, "estimates_one", boom)
    monkeypatch.setattr(router, "estimates", boom)
    for path, body in (
        ("/classify", {"text": "hi"}),
        ("/classify/batch", {"items": [{"text": "a"}]}),
    ):
        r = post(client, body, path)
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error"}
        assert "secret" not in r.text and "Traceback" not in r.text
    assert 'rung_requests_total{route="/classify",status="500"} 1.0' in client.get("/metrics").text


def test_exploration_moves_a_share_one_tier_down_and_flags_it(make_client):
    client = make_client(explore_rate=0.5, explore_seed=7)
    answers = [post(client, {"text": HARD, "threshold": 1.0}).json() for _ in range(200)]
    explored = [a for a in answers if a["explore"]]
    assert 60 < len(explored) < 140
    assert {a["tier"] for a in explored} == {"medium"}
    assert {a["tier"] for a in answers if not a["explore"]} == {"large"}
    floor = [
        post(client, {"text": HARD, "threshold": 1.0, "min_tier": "large"}).json()
        for _ in range(50)
    ]
    assert not any(a["explore"] for a in floor) and {a["tier"] for a in floor} == {"large"}
    bottom = [post(client, {"text": "hi", "threshold": 0.0}).json() for _ in range(50)]
    assert not any(a["explore"] for a in bottom)  # never below tier 0
    again = make_client(explore_rate=0.5, explore_seed=7)
    replay = [post(again, {"text": HARD, "threshold": 1.0}).json()["explore"] for _ in range(200)]
    assert replay == [a["explore"] for a in answers]  # the seed makes it reproducible
    metrics = client.get("/metrics").text
    assert f'rung_explored_total{{tier="medium"}} {float(len(explored))}' in metrics


def test_requests_are_logged_as_hashes_not_text(make_client, caplog):
    import logging

    default = make_client()
    with caplog.at_level(logging.INFO, logger="rung"):
        post(default, {"text": "my secret prompt"})
    lines = [r.getMessage() for r in caplog.records if r.name == "rung.requests"]
    assert len(lines) == 1 and "sha256=" in lines[0]
    assert "secret" not in lines[0]
    quiet = make_client(log_requests=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rung"):
        post(quiet, {"text": "my secret prompt"})
    assert not [r for r in caplog.records if r.name == "rung.requests"]
    with_text = make_client(log_text=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rung"):
        post(with_text, {"text": "my secret prompt"})
    assert "my secret prompt" in caplog.records[-1].getMessage()


def test_a_streamed_body_without_length_is_read_and_capped(make_client):
    client = make_client(max_body_bytes=200)

    def chunks(*parts: bytes) -> Iterator[bytes]:
        yield from parts

    headers = {"content-type": "application/json"}
    r = client.post("/classify", content=chunks(b'{"text": "hi ', b'there"}'), headers=headers)
    assert r.status_code == 200, r.text
    r = client.post("/classify", content=chunks(b'{"text": "', b"x" * 300, b'"}'), headers=headers)
    assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body"]


def test_the_hot_path_encoder_writes_what_json_dumps_would(client):
    from serve.api.decision import answer, answer_json
    from serve.model.policy import Rule
    from serve.model.runtime import Setting

    served = client.app.state.ctx.holder.current
    for p, p_correct, setting, explored in (
        ([0.25, 0.5000001, 1.0], [0.25, 0.5, 0.9], Setting(Rule.THRESHOLD, 0.5), True),
        ([1e-9, 0.999999999, 1.0], None, Setting(Rule.THRESHOLD, 1.0, 0.9), False),
        ([0.1, 0.2, 1.0], [0.1, 0.2, 0.3], Setting(Rule.UTILITY, 41.25, 0.95), False),
    ):
        cost = [1e-5, 3.0000000000000004e-05, 0.0125]
        for tier in range(3):
            fast = answer_json(served, tier, p, p_correct, cost, setting, explored)
            plain = json.dumps(
                answer(served, tier, p, p_correct, cost, setting, explored), separators=(",", ":")
            ).encode()
            assert fast == plain
