"""The published request schema and the server agree, request by request (fast; the fuzzing
is in test_schemathesis.py)."""

from __future__ import annotations

import sys

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from serve.api.app import create_app
from serve.api.openapi import WHITESPACE
from serve.api.settings import Settings
from serve.model.text import text_from_messages

USER = {"role": "user", "content": "Prove that there are infinitely many primes."}
CASES = [
    ({"text": "hello"}, True),
    ({"messages": [USER]}, True),
    ({"text": None, "messages": [USER]}, True),  # null counts as absent
    ({"text": "hello", "messages": [USER]}, False),  # the two exclude each other
    ({}, False),
    ({"text": None, "messages": None}, False),
    ({"text": " \t\x1c\x85\u3000"}, False),  # blank by str.strip()'s rules
    ({"messages": [{"role": "system", "content": "be brief"}]}, False),  # no user turn
    ({"messages": [USER, {"role": "user", "content": "  "}]}, True),  # last user turn with text
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, True),
    ({"text": "hi", "min_tier": "medium", "max_tier": 2}, True),
    ({"text": "hi", "min_tier": "large", "max_tier": "small"}, False),  # min above max
    ({"text": "hi", "min_tier": "huge"}, False),  # not on the ladder
    ({"text": "hi", "max_tier": 3}, False),
    ({"text": "hi", "threshold": 1.5}, False),
]


@pytest.fixture(scope="module")
def client(tiny_bundles):
    app = create_app(Settings(model=tiny_bundles["a"], poll_seconds=0, log_requests=False))
    with TestClient(app) as c:
        yield c


def _validator(doc: dict, name: str) -> jsonschema_rs.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema_rs.validator_for(schema)


@pytest.mark.parametrize(("body", "valid"), CASES)
def test_the_schema_says_valid_exactly_when_the_server_accepts(client, body, valid):
    validator = _validator(client.get("/openapi.json").json(), "ClassifyRequest")
    assert validator.is_valid(body) is valid
    status = client.post("/classify", json=body).status_code
    assert (status == 200) is valid, status
    batch = _validator(client.get("/openapi.json").json(), "BatchRequest")
    assert batch.is_valid({"items": [body]}) is valid
    assert (client.post("/classify/batch", json={"items": [body]}).status_code == 200) is valid


def test_the_schema_states_the_choice_the_ladder_and_the_limits(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    request = schemas["ClassifyRequest"]
    assert [b["required"] for b in request["oneOf"]] == [["text"], ["messages"]]
    assert {"enum": ["small", "medium", "large", 0, 1, 2]} in request["properties"]["min_tier"][
        "anyOf"
    ]
    text = request["properties"]["text"]["anyOf"][0]
    assert text["maxLength"] == Settings().max_text_chars
    assert schemas["BatchRequest"]["properties"]["items"]["maxItems"] == Settings().max_batch


def test_the_whitespace_class_is_what_strip_removes():
    import re

    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert re.fullmatch(f"[{WHITESPACE}]+", "".join(spaces))
    others = re.compile(f"[{WHITESPACE}]")
    assert sum(1 for c in range(sys.maxunicode + 1) if others.match(chr(c))) == len(spaces)


def test_messages_read_the_last_user_turn_that_has_text():
    turns = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "image_url"}]},
    ]
    assert text_from_messages(turns) == "first"
    assert text_from_messages(turns[1:]) == ""
