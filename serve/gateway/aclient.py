"""The asyncio twin of `RungClient`, for gateways that are asyncio programs (LiteLLM).

Same contract as the sync client: a timeout in milliseconds over the whole call, a fail-open
tier, a cooldown after a transport failure, keep-alive connections, and `classify` never raises
for transport or server trouble. No thread hop: the call runs on the gateway's event loop.

aiohttp, not httpx: on loopback against the same rung server, aiohttp added ~0.05 ms per call
over the sync client where httpx's AsyncClient added several milliseconds (measured for this
change; see docs/litellm.md). Both are LiteLLM dependencies already.

A session belongs to one event loop; when called from another loop (tests, or a program that
runs `asyncio.run` twice) the client opens a fresh session for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from serve.gateway.client import Decision, FailOpen, _Failure, _parse, _request


class AsyncRungClient(FailOpen):
    """`await classify(...)` against `POST /classify`; falls back to `fail_open_tier` on trouble.

    timeout_ms bounds connecting, sending and reading together. cooldown_ms: after a timeout,
    refused connection or 5xx, answer fail-open without calling for this long (0 = always try).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        timeout_ms: float = 50.0,
        fail_open_tier: str = "large",
        api_key: str | None = None,
        cooldown_ms: float = 1000.0,
        pool_size: int = 32,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must look like http://host:port, got {url!r}")
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be > 0")
        if cooldown_ms < 0:
            raise ValueError("cooldown_ms must be >= 0")
        self.url = url.rstrip("/")
        self.timeout = timeout_ms / 1000.0
        self.cooldown = cooldown_ms / 1000.0
        self.fail_open_tier = fail_open_tier
        self.pool_size = pool_size
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_until = 0.0
        self._ladder: list[str] = []
        self.stats = {"ok": 0, "fail_open": 0}

    # -- public API -------------------------------------------------------------------------

    async def classify(
        self,
        text: str | None = None,
        *,
        messages: Sequence[dict[str, Any]] | None = None,
        threshold: float | None = None,
        min_tier: str | int | None = None,
        max_tier: str | int | None = None,
        quality: float | None = None,
    ) -> Decision:
        """The tier to use for this request; never raises for service trouble."""
        try:
            body = _request(text, messages, threshold, min_tier, max_tier, quality)
        except (TypeError, ValueError) as exc:  # a message that is not JSON-serialisable
            return self._fallback(f"request not sent: {exc}")
        try:
            raw = await self._call("/classify", body)
        except _Failure as exc:
            return self._fallback(str(exc))
        return self._decision(raw)

    async def classify_batch(self, items: Sequence[dict[str, Any]]) -> list[Decision]:
        """Several requests in one call (dicts shaped like /classify bodies), in order."""
        try:
            raw = await self._call("/classify/batch", json.dumps({"items": list(items)}).encode())
            return [self._decision(r) for r in raw["items"]]
        except (_Failure, KeyError, TypeError, ValueError) as exc:
            return [self._fallback(str(exc)) for _ in items]

    async def aclose(self) -> None:
        session, loop = self._session, self._loop
        self._session, self._loop = None, None
        if session is None or session.closed:
            return
        if loop is asyncio.get_running_loop():
            await session.close()
        else:
            _abandon(session)

    async def __aenter__(self) -> AsyncRungClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals --------------------------------------------------------------------------

    def _session_for_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is loop and not self._session.closed:
            return self._session
        if self._session is not None and not self._session.closed:
            _abandon(self._session)  # its loop is gone or another one; it cannot be awaited here
        connector = aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, skip_auto_headers=("User-Agent",)
        )
        self._loop = loop
        return self._session

    async def _call(self, path: str, body: bytes) -> Any:
        now = time.monotonic()
        if now < self._down_until:
            raise _Failure("rung marked down after a recent failure (cooldown)", down=False)
        try:
            async with asyncio.timeout(self.timeout):
                status, data = await self._exchange(path, body)
            return _parse(status, data)
        except TimeoutError:
            failure = _Failure(f"no answer within {self.timeout * 1000:.0f} ms", down=True)
        except _Failure as exc:
            failure = exc
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            failure = _Failure(f"{type(exc).__name__}: {exc}", down=True)
        if failure.down and self.cooldown:
            self._down_until = time.monotonic() + self.cooldown
        raise failure

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        session = self._session_for_loop()
        for attempt in (0, 1):  # a kept-alive connection the server closed gets one retry
            try:
                async with session.post(self.url + path, data=body) as resp:
                    return resp.status, await resp.read()
            except aiohttp.ServerDisconnectedError:
                if attempt:
                    raise
        raise _Failure("unreachable", down=True)  # pragma: no cover


def _abandon(session: aiohttp.ClientSession) -> None:
    """Drop a session whose event loop is gone, without awaiting on that loop.

    aiohttp closes connections through their loop; a closed loop cannot run that, so the kept
    sockets are closed directly (otherwise they leak until garbage collection).
    """
    connector = session.connector
    session.detach()
    if connector is None:
        return
    for conns in list(getattr(connector, "_conns", {}).values()):
        for proto, _ in conns:
            transport = getattr(proto, "transport", None)
            sock = getattr(transport, "_sock", None)
            if sock is not None:
                sock.close()
                transport._sock = None  # type: ignore[union-attr]
    with contextlib.suppress(Exception):  # the loop may be closed; the sockets are closed
        connector._close()
