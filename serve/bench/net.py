"""The network side of `rung bench serve`: a lean keep-alive client and server processes.

The client sends pre-encoded HTTP/1.1 requests over one raw socket and frames responses by
Content-Length, because an HTTP library's own overhead (httpx: ~0.4 ms) would hide the server.
Servers are subprocesses on 127.0.0.1; their cold start is the time to the first 200 on
/readyz.
"""

from __future__ import annotations

import selectors
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve.model.errors import RungError

# -- a lean keep-alive HTTP/1.1 client ---------------------------------------------------------


def post_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _complete(buf: bytes) -> int:
    """Length of the first complete response in buf (Content-Length framing), or 0."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = buf[:end].lower()
    i = head.find(b"content-length:")
    if i < 0:
        raise RungError("response without Content-Length")
    j = head.find(b"\r\n", i)
    n = int(head[i + 15 : j if j > 0 else None])
    total = end + 4 + n
    return total if len(buf) >= total else 0


class LeanClient:
    """One keep-alive connection; `send` returns the raw response bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RungError("server closed the connection")
            buf += chunk
            if n := _complete(buf):
                return buf[:n]

    def close(self) -> None:
        self.sock.close()


def status_of(response: bytes) -> int:
    return int(response[9:12])


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    cold_start_s: float

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (user + system), from /proc."""
        return cpu_s(self.proc.pid)


def cpu_s(pid: int) -> float:
    """CPU seconds of every thread of `pid`, in nanoseconds' resolution (schedstat's first
    field; /proc/PID/stat counts 10 ms clock ticks, too coarse for a short run)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended while we looked
    return total / 1e9


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RungError(f"no VmRSS for pid {pid}")


@contextmanager
def server(
    name: str, cmd: list[str], port: int, env: dict[str, str], timeout_s: float
) -> Iterator[Server]:
    """Start a server and wait until GET /readyz answers 200; the wait is its cold start."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not _wait_ready(proc, port, start + timeout_s):
                log.seek(0)
                err = log.read().decode(errors="replace")[-2000:].strip()
                raise RungError(f"{name} server did not become ready: {err}")
            yield Server(name, proc, port, time.perf_counter() - start)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    probe = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            return False
        try:
            client = LeanClient(port)
            try:
                if status_of(client.send(probe)) == 200:
                    return True
            finally:
                client.close()
        except (OSError, RungError):
            pass
        time.sleep(0.005)
    return False


# -- measurements ------------------------------------------------------------------------------


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "n": int(ms.size),
    }


def http_latency(
    servers: list[Server], requests: list[bytes], n: int, rounds: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Sequential keep-alive requests, alternating rounds between servers."""
    clients = {s.name: LeanClient(s.port) for s in servers}
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    try:
        for s in servers:
            for i in range(warmup):
                _check(clients[s.name].send(requests[i % len(requests)]), s.name)
        per_round = max(1, n // rounds)
        clock = time.perf_counter
        for r in range(rounds):
            for s in servers if r % 2 == 0 else servers[::-1]:
                c, out = clients[s.name], times[s.name]
                for i in range(per_round):
                    req = requests[i % len(requests)]
                    t0 = clock()
                    resp = c.send(req)
                    out.append(clock() - t0)
                    _check(resp, s.name)
    finally:
        for c in clients.values():
            c.close()
    return {name: percentiles(t) for name, t in times.items()}


def _check(response: bytes, name: str) -> None:
    if status_of(response) != 200:
        raise RungError(f"{name} answered {response[:200]!r}")


def throughput(port: int, requests: list[bytes], total: int, concurrency: int) -> float:
    """Requests per second with `concurrency` keep-alive connections, each sending its next
    request as soon as the previous answer is complete (closed loop, no pipelining)."""
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(concurrency):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conns.append(sock)
    sent = done = 0
    bufs: dict[socket.socket, bytes] = {}
    start = time.perf_counter()
    try:
        for sock in conns:
            sock.sendall(requests[sent % len(requests)])
            sent += 1
            bufs[sock] = b""
            sel.register(sock, selectors.EVENT_READ)
        while done < total:
            for key, _ in sel.select(timeout=10):
                sock = key.fileobj  # type: ignore[assignment]
                bufs[sock] += sock.recv(65536)
                n = _complete(bufs[sock])
                if not n:
                    continue
                _check(bufs[sock][:n], f"port {port}")
                bufs[sock] = bufs[sock][n:]
                done += 1
                if sent < total:
                    sock.sendall(requests[sent % len(requests)])
                    sent += 1
    finally:
        sel.close()
        for sock in conns:
            sock.close()
    return total / (time.perf_counter() - start)
