"""A small client for gateways: keep-alive connections, a timeout in milliseconds, fail-open.

An outage of rung must never become an outage of the gateway, so `classify` never raises for
transport or server problems: it returns a `Decision` with `fail_open=True` and the configured
tier (usually the top one, which is always sufficient). After a transport failure it stops
calling for `cooldown_ms`, so a dead or overloaded service costs nothing per request.

Standard library only (http.client), thread-safe (a small pool of connections).
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Decision:
    tier: str
    tier_index: int | None = None
    p_sufficient: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    model: dict[str, str] | None = None
    explore: bool = False
    fail_open: bool = False  # True: rung did not answer in time; `tier` is the fallback
    error: str | None = None
    # Schema-2 bundles (None from older servers or bundles): the rule and quality setting
    # used, the estimated cost of the chosen tier, P(each tier answers well).
    rule: str | None = None
    quality: float | None = None
    cost_usd: float | None = None
    p_correct: dict[str, float] | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Decision:
        return cls(
            tier=raw["tier"],
            tier_index=raw["tier_index"],
            p_sufficient=raw["p_sufficient"],
            threshold=raw["threshold"],
            model=raw["model"],
            explore=bool(raw.get("explore", False)),
            rule=raw.get("rule"),
            quality=raw.get("quality"),
            cost_usd=raw.get("cost_usd"),
            p_correct=raw.get("p_correct"),
        )


class _Failure(Exception):
    """A call that did not produce a decision; `down` marks a transport/server failure."""

    def __init__(self, message: str, down: bool) -> None:
        super().__init__(message)
        self.down = down


class FailOpen:
    """What the sync and async clients share: turning a response into a `Decision`, or
    trouble into the fail-open one, with the counters both expose."""

    fail_open_tier: str
    _ladder: list[str]
    stats: dict[str, int]

    def _decision(self, raw: dict[str, Any]) -> Decision:
        try:
            decision = Decision.from_json(raw)
        except (KeyError, TypeError) as exc:
            return self._fallback(f"unexpected response: missing {exc}")
        if not self._ladder:
            self._ladder = list(decision.p_sufficient)
        self.stats["ok"] += 1
        return decision

    def _fallback(self, error: str) -> Decision:
        self.stats["fail_open"] += 1
        index = (
            self._ladder.index(self.fail_open_tier) if self.fail_open_tier in self._ladder else None
        )
        return Decision(tier=self.fail_open_tier, tier_index=index, fail_open=True, error=error)


class RungClient(FailOpen):
    """Call `POST /classify` with connection reuse; fall back to `fail_open_tier` on trouble.

    timeout_ms bounds connecting, sending and waiting for the response (set on the socket
    before each step). cooldown_ms: after a timeout, refused connection or 5xx, answer
    fail-open without calling for this long (0 = always try).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        timeout_ms: float = 50.0,
        fail_open_tier: str = "large",
        api_key: str | None = None,
        cooldown_ms: float = 1000.0,
        pool_size: int = 8,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must look like http://host:port, got {url!r}")
        if timeout_ms <= 0:
            raise ValueError("timeout_ms must be > 0")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self.timeout = timeout_ms / 1000.0
        self.cooldown = cooldown_ms / 1000.0
        self.fail_open_tier = fail_open_tier
        self._headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._pool: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(pool_size)
        self._down_until = 0.0
        self._ladder: list[str] = []
        self.stats = {"ok": 0, "fail_open": 0}

    # -- public API -------------------------------------------------------------------------

    def classify(
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
        body = _request(text, messages, threshold, min_tier, max_tier, quality)
        try:
            raw = self._call("/classify", body)
        except _Failure as exc:
            return self._fallback(str(exc))
        return self._decision(raw)

    def classify_batch(self, items: Sequence[dict[str, Any]]) -> list[Decision]:
        """Several requests in one call (dicts shaped like /classify bodies), in order."""
        try:
            raw = self._call("/classify/batch", json.dumps({"items": list(items)}).encode())
            return [self._decision(r) for r in raw["items"]]
        except (_Failure, KeyError, TypeError) as exc:
            return [self._fallback(str(exc)) for _ in items]

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> RungClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _connect(self, deadline: float) -> http.client.HTTPConnection:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=left)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _call(self, path: str, body: bytes) -> Any:
        now = time.monotonic()
        if now < self._down_until:
            raise _Failure("rung marked down after a recent failure (cooldown)", down=False)
        deadline = now + self.timeout
        try:
            return self._exchange(path, body, deadline)
        except _Failure as exc:
            if exc.down and self.cooldown:
                self._down_until = time.monotonic() + self.cooldown
            raise

    def _exchange(self, path: str, body: bytes, deadline: float) -> Any:
        for attempt in (0, 1):  # a pooled connection the server closed gets one fresh retry
            try:
                conn = self._pool.get_nowait()
                reused = True
            except queue.Empty:
                conn, reused = None, False
            try:
                if conn is None:
                    conn = self._connect(deadline)
                status, data = self._send(conn, path, body, deadline)
            except TimeoutError:
                _close(conn)
                raise _Failure(
                    f"no answer within {self.timeout * 1000:.0f} ms", down=True
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                _close(conn)
                if reused and attempt == 0 and time.monotonic() < deadline:
                    continue
                raise _Failure(f"{type(exc).__name__}: {exc}", down=True) from None
            self._release(conn)
            return _parse(status, data)
        raise _Failure("unreachable", down=True)  # pragma: no cover

    def _send(
        self, conn: http.client.HTTPConnection, path: str, body: bytes, deadline: float
    ) -> tuple[int, bytes]:
        _set_timeout(conn, deadline)
        conn.request("POST", self._prefix + path, body, self._headers)
        _set_timeout(conn, deadline)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            conn.close()
        return resp.status, data

    def _release(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            return
        try:
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.close()


def _request(
    text: str | None,
    messages: Sequence[dict[str, Any]] | None,
    threshold: float | None,
    min_tier: str | int | None,
    max_tier: str | int | None,
    quality: float | None = None,
) -> bytes:
    body: dict[str, Any] = {"text": text} if messages is None else {"messages": list(messages)}
    knobs = (
        ("quality", quality),
        ("threshold", threshold),
        ("min_tier", min_tier),
        ("max_tier", max_tier),
    )
    for key, value in knobs:
        if value is not None:
            body[key] = value
    return json.dumps(body).encode()


def _set_timeout(conn: http.client.HTTPConnection, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _parse(status: int, data: bytes) -> Any:
    if status >= 500:
        raise _Failure(f"HTTP {status}", down=True)
    try:
        raw = json.loads(data)
    except ValueError:
        raise _Failure(f"HTTP {status}: response is not JSON", down=status >= 500) from None
    if status != 200:
        detail = raw.get("detail") if isinstance(raw, dict) else raw
        raise _Failure(f"HTTP {status}: {detail}", down=False)
    return raw


def _close(conn: http.client.HTTPConnection | None) -> None:
    if conn is not None:
        conn.close()
