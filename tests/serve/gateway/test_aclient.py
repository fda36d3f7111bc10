"""The asyncio client against a real server: same contract as the sync one, on one loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from serve.gateway.aclient import AsyncRungClient
from serve.gateway.client import RungClient
from tests.support.servers import free_port
from tests.support.tiny_data import LARGE, SMALL

HARD = "Prove that there are infinitely many primes congruent to 3 mod 4, rigorously."


def test_decisions_match_the_sync_client_and_reuse_one_connection(rung_url):
    async def run():
        async with AsyncRungClient(rung_url, timeout_ms=5000) as client:
            first = await client.classify("hi there!")
            for _ in range(5):
                again = await client.classify("hi there!")
                assert again == first
            connector = client._session.connector
            assert sum(len(v) for v in connector._conns.values()) == 1  # one kept-alive socket
            chat = await client.classify(messages=[{"role": "user", "content": HARD}], threshold=1)
            clamped = await client.classify(HARD, threshold=1.0, max_tier="medium")
            batch = await client.classify_batch([{"text": "hi there!"}, {"text": HARD}])
            return first, chat, clamped, batch, dict(client.stats)

    first, chat, clamped, batch, stats = asyncio.run(run())
    with RungClient(rung_url, timeout_ms=5000) as sync:
        assert first == sync.classify("hi there!")
        _same(batch[1], sync.classify(HARD))
    assert not first.fail_open and first.model["name"] == "a"
    assert chat.tier == "large" and chat.threshold == 1.0
    assert clamped.tier == "medium"
    # The batch route runs the heads on the whole batch: the same tier and setting, the
    # probabilities equal to float32 rounding (a 2-row graph run vs a 1-row one).
    _same(batch[0], first)
    assert stats == {"ok": 10, "fail_open": 0}


def test_concurrent_calls_on_one_loop_all_answer(rung_url):
    texts = SMALL + LARGE

    async def run():
        async with AsyncRungClient(rung_url, timeout_ms=5000, pool_size=4) as client:
            return await asyncio.gather(*(client.classify(t) for t in texts))

    decisions = asyncio.run(run())
    assert [d.fail_open for d in decisions] == [False] * len(texts)
    with RungClient(rung_url, timeout_ms=5000) as sync:
        assert [d.tier for d in decisions] == [sync.classify(t).tier for t in texts]


def test_a_connection_closed_while_idle_is_replaced_without_failing(rung_url):
    async def run():
        async with AsyncRungClient(rung_url, timeout_ms=5000) as client:
            assert not (await client.classify("hello")).fail_open
            for conns in client._session.connector._conns.values():
                for proto, _ in conns:
                    proto.transport.close()  # as if the server timed the idle connection out
            await asyncio.sleep(0.01)
            return await client.classify("hello")

    decision = asyncio.run(run())
    assert not decision.fail_open, decision.error


def test_a_silent_service_fails_open_within_the_timeout_then_cools_down(silent_url):
    async def run():
        client = AsyncRungClient(silent_url, timeout_ms=50, cooldown_ms=10_000)
        start = time.perf_counter()
        first = await client.classify("hello")
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = await client.classify("hello")
        second_s = time.perf_counter() - start
        await client.aclose()
        return first, first_s, second, second_s, client.stats

    first, first_s, second, second_s, stats = asyncio.run(run())
    assert first.fail_open and first.tier == "large" and "no answer within 50 ms" in first.error
    assert 0.04 < first_s < 1.0
    assert second.fail_open and "cooldown" in second.error and second_s < 0.01
    assert stats == {"ok": 0, "fail_open": 2}


def test_a_service_that_is_down_fails_open_fast_and_batches_too():
    async def run():
        client = AsyncRungClient(
            f"http://127.0.0.1:{free_port()}",
            timeout_ms=1000,
            fail_open_tier="medium",
            cooldown_ms=0,
        )
        out = []
        for _ in range(2):
            start = time.perf_counter()
            out.append((await client.classify("hello"), time.perf_counter() - start))
        batch = await client.classify_batch([{"text": "a"}, {"text": "b"}])
        await client.aclose()
        return out, batch

    out, batch = asyncio.run(run())
    for d, seconds in out:
        assert d.fail_open and d.tier == "medium" and "Connect" in d.error
        assert seconds < 0.5
    assert [d.fail_open for d in batch] == [True, True]


def test_refused_input_and_auth_fail_open_without_cooling_down(rung_url, locked_rung_url):
    async def run():
        async with AsyncRungClient(rung_url, timeout_ms=5000) as client:
            assert not (await client.classify("warm up")).fail_open
            bad = await client.classify("   ")
            after = await client.classify("hello again")
        async with AsyncRungClient(locked_rung_url, timeout_ms=5000, api_key="k3y") as client:
            keyed = await client.classify("hello")
        async with AsyncRungClient(locked_rung_url, timeout_ms=5000) as client:
            unkeyed = await client.classify("hello")
        return bad, after, keyed, unkeyed

    bad, after, keyed, unkeyed = asyncio.run(run())
    assert bad.fail_open and "HTTP 422" in bad.error and bad.tier_index == 2
    assert not after.fail_open  # a refused request is not an outage
    assert not keyed.fail_open
    assert unkeyed.fail_open and "HTTP 401" in unkeyed.error


def test_one_client_serves_successive_event_loops(rung_url):
    client = AsyncRungClient(rung_url, timeout_ms=5000)
    first = asyncio.run(client.classify("hello"))
    second = asyncio.run(client.classify("hello"))  # the first loop is closed by now
    asyncio.run(client.aclose())
    assert not first.fail_open and not second.fail_open


@pytest.mark.parametrize(
    ("url", "timeout"), [("localhost:8000", 50), ("ftp://x", 50), ("http://127.0.0.1:8000", 0)]
)
def test_bad_client_configuration_is_refused(url, timeout):
    with pytest.raises(ValueError):
        AsyncRungClient(url, timeout_ms=timeout)


def _same(a: Any, b: Any) -> None:
    from dataclasses import asdict

    da, db = asdict(a), asdict(b)
    for key in ("p_sufficient", "p_correct"):
        pa, pb = da.pop(key), db.pop(key)
        assert pa.keys() == pb.keys()
        assert all(abs(pa[k] - pb[k]) < 1e-6 for k in pa), (pa, pb)
    assert abs(da.pop("cost_usd") - db.pop("cost_usd")) < 1e-12
    assert da == db
