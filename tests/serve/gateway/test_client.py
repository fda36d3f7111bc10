"""The gateway client against a real server: reuse, timeouts, fail-open, cooldown, auth."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.api.app import create_app
from serve.api.settings import Settings
from serve.gateway.client import RungClient
from tests.support.servers import free_port, live_server

HARD = "Prove that there are infinitely many primes congruent to 3 mod 4, rigorously."


@pytest.fixture(scope="module")
def url(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    settings = Settings(model=tiny_bundles["a"], poll_seconds=0, api_key=None)
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def locked_url(tiny_bundles: dict[str, Path]) -> Iterator[str]:
    settings = Settings(model=tiny_bundles["a"], poll_seconds=0, api_key="k3y")
    with live_server(create_app(settings)) as base:
        yield base


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_decisions_match_the_server_and_reuse_one_connection(url):
    with RungClient(url, timeout_ms=5000) as client:
        first = client.classify("hi there!")
        assert not first.fail_open and first.error is None
        assert first.tier in ("small", "medium", "large") and first.model["name"] == "a"
        sock = client._pool.queue[0].sock
        for _ in range(5):
            again = client.classify("hi there!")
            assert again.p_sufficient == first.p_sufficient
        assert len(client._pool.queue) == 1 and client._pool.queue[0].sock is sock
        chat = client.classify(messages=[{"role": "user", "content": HARD}], threshold=1.0)
        assert chat.tier == "large" and chat.threshold == 1.0
        clamped = client.classify(HARD, threshold=1.0, max_tier="medium")
        assert clamped.tier == "medium"
        batch = client.classify_batch([{"text": "hi there!"}, {"text": HARD, "threshold": 0}])
        assert [d.tier for d in batch][1] == "small" and batch[0].tier == first.tier
        assert client.stats == {"ok": 10, "fail_open": 0}
        knob = client.classify(HARD, quality=0.6)
        assert knob.rule == "utility" and knob.quality == 0.6 and knob.cost_usd > 0
        assert set(knob.p_correct) == {"small", "medium", "large"}


def test_a_connection_closed_while_idle_is_replaced_without_failing(url):
    with RungClient(url, timeout_ms=5000) as client:
        assert not client.classify("hello").fail_open
        client._pool.queue[0].sock.shutdown(socket.SHUT_RDWR)  # as if the server timed it out
        decision = client.classify("hello")
        assert not decision.fail_open, decision.error


def test_a_silent_service_fails_open_within_the_timeout_then_cools_down(silent_port):
    client = RungClient(
        f"http://127.0.0.1:{silent_port}", timeout_ms=50, fail_open_tier="large", cooldown_ms=10_000
    )
    start = time.perf_counter()
    d = client.classify("hello")
    elapsed = time.perf_counter() - start
    assert d.fail_open and d.tier == "large" and "no answer within 50 ms" in d.error
    assert 0.04 < elapsed < 1.0
    start = time.perf_counter()
    d = client.classify("hello")
    assert d.fail_open and "cooldown" in d.error
    assert time.perf_counter() - start < 0.01  # no network call while cooling down
    assert client.stats["fail_open"] == 2


def test_a_service_that_is_down_fails_open_fast():
    client = RungClient(
        f"http://127.0.0.1:{free_port()}", timeout_ms=1000, fail_open_tier="medium", cooldown_ms=0
    )
    for _ in range(2):  # no cooldown: each call tries, and each fails open
        start = time.perf_counter()
        d = client.classify("hello")
        assert d.fail_open and d.tier == "medium" and "Connection" in d.error
        assert time.perf_counter() - start < 0.5
    batch = client.classify_batch([{"text": "a"}, {"text": "b"}])
    assert [d.fail_open for d in batch] == [True, True]


def test_refused_input_fails_open_without_cooling_down(url):
    with RungClient(url, timeout_ms=5000, fail_open_tier="large") as client:
        assert not client.classify("warm up").fail_open
        bad = client.classify("   ")
        assert bad.fail_open and "HTTP 422" in bad.error
        assert bad.tier_index == 2  # the ladder learnt from earlier answers
        assert not client.classify("hello again").fail_open  # still calling


def test_api_key_is_sent_when_configured(locked_url):
    with RungClient(locked_url, timeout_ms=5000, api_key="k3y") as client:
        assert not client.classify("hello").fail_open
    with RungClient(locked_url, timeout_ms=5000) as client:
        d = client.classify("hello")
        assert d.fail_open and "HTTP 401" in d.error


@pytest.mark.parametrize(
    ("url", "timeout"), [("localhost:8000", 50), ("ftp://x", 50), ("http://127.0.0.1:8000", 0)]
)
def test_bad_client_configuration_is_refused(url, timeout):
    with pytest.raises(ValueError):
        RungClient(url, timeout_ms=timeout)
