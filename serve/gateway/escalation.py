"""Escalation logs written by the gateway: one JSON line per attempt, in the layout that
`rung retrain --logs` reads (see docs/retraining.md, "one line per attempt").

Writing never blocks a request: `append` puts the line on a bounded queue and returns; a
writer thread drains it to disk. When the queue is full the line is dropped and counted
(`stats["dropped"]`), never waited for. A thread rather than an asyncio task: it works for any
number of event loops (or none) and keeps file I/O off the loop entirely.

Files rotate by UTC day and by size: `escalations-20261203.jsonl`, then
`escalations-20261203-1.jsonl`, ... What a crash can lose: every line still queued (at most
`queue_size`) plus the batch being written (at most `BATCH` lines); each batch is flushed to the
OS before the next is taken, and `close()` (run at exit) drains the queue.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import json
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

from serve.model.text import text_from_messages

BATCH = 256
PREFIX = "escalations"
_STOP = object()


def text_of(messages: Any) -> str:
    """The text rung classifies for these chat messages (the server's rule), '' if none."""
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    try:
        return text_from_messages(messages) or ""
    except (TypeError, ValueError, AttributeError, KeyError):
        return ""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def attempt_line(
    request_id: str,
    tier: str,
    outcome: str,
    *,
    text: str | None = None,
    keep_text: bool = False,
    attempt: int | None = None,
    routed_tier: str | None = None,
    model_version: str | None = None,
    explore: bool = False,
    cost_usd: float | None = None,
    latency_ms: float | None = None,
    source: str = "gateway",
    **extra: Any,
) -> dict[str, Any]:
    """One attempt in rung's escalation-log layout. The text goes in only with keep_text."""
    if outcome not in ("success", "failure"):
        raise ValueError(f"outcome must be 'success' or 'failure', got {outcome!r}")
    line: dict[str, Any] = {"request_id": str(request_id), "ts": now_iso()}
    if attempt is not None:
        line["attempt"] = attempt
    line.update(tier=tier, outcome=outcome, source=source)
    if text:
        line["text_sha256"] = sha256_text(text)
        if keep_text:
            line["text"] = text
    if routed_tier is not None:
        line["routed_tier"] = routed_tier
    if model_version is not None:
        line["model_version"] = model_version
    line["explore"] = bool(explore)
    if cost_usd is not None and cost_usd >= 0:
        line["cost_usd"] = float(cost_usd)
    if latency_ms is not None:
        line["latency_ms"] = round(float(latency_ms), 3)
    line.update({k: v for k, v in extra.items() if v is not None})
    return line


class EscalationLog:
    """A bounded queue and one writer thread appending JSON lines to rotating files."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_bytes: int = 64 * 2**20,
        queue_size: int = 10_000,
        prefix: str = PREFIX,
    ) -> None:
        if max_bytes <= 0 or queue_size <= 0:
            raise ValueError("max_bytes and queue_size must be > 0")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.stats = {"queued": 0, "written": 0, "dropped": 0, "errors": 0}
        self.last_error: str | None = None
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._day = ""
        self._index = 0
        self._fh: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="rung-escalation-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def append(self, line: dict[str, Any]) -> bool:
        """Queue one line; False (and counted) when the queue is full or the log is closed."""
        if self._closed:
            self.stats["dropped"] += 1
            return False
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.stats["dropped"] += 1
            return False
        self.stats["queued"] += 1
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued line is on disk (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.002)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        atexit.unregister(self.close)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self.prefix}-*.jsonl"))

    # -- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            try:
                self._write([item for item in batch if item is not _STOP])
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                if self._fh is not None:
                    self._fh.close()
                return

    def _write(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        try:
            data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            fh = self._file(len(data.encode("utf-8")))
            fh.write(data)
            fh.flush()
            self.stats["written"] += len(lines)
        except (OSError, TypeError, ValueError) as exc:  # a full disk must not stop the gateway
            self.stats["errors"] += len(lines)
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _file(self, incoming: int) -> Any:
        day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        if day != self._day:
            self._close_file()
            self._day, self._index = day, self._last_index(day)
        if self._fh is None:
            self._fh = open(self._path(), "a", encoding="utf-8")  # noqa: SIM115 - kept open
        size = self._fh.tell()
        if size and size + incoming > self.max_bytes:  # a batch larger than max_bytes still fits
            self._close_file()
            self._index += 1
            self._fh = open(self._path(), "a", encoding="utf-8")  # noqa: SIM115
        return self._fh

    def _path(self) -> Path:
        suffix = f"-{self._index}" if self._index else ""
        return self.directory / f"{self.prefix}-{self._day}{suffix}.jsonl"

    def _last_index(self, day: str) -> int:
        """Resume in the newest file of the day after a restart."""
        pattern = re.compile(rf"{re.escape(self.prefix)}-{day}(?:-(\d+))?\.jsonl$")
        found = [pattern.match(p.name) for p in self.directory.iterdir()]
        return max((int(m.group(1) or 0) for m in found if m), default=0)

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


_SHARED: dict[Path, EscalationLog] = {}
_SHARED_LOCK = threading.Lock()


def shared_log(settings: Any) -> EscalationLog | None:
    """The one writer per folder in this process (hook, callback and cascade share it, so
    lines never interleave across writers); None when no folder is configured."""
    folder = getattr(settings, "escalation_log_dir", None)
    if folder is None:
        return None
    key = Path(folder).resolve()
    with _SHARED_LOCK:
        log = _SHARED.get(key)
        if log is None or log._closed:
            log = _SHARED[key] = EscalationLog(
                key,
                max_bytes=int(settings.escalation_log_max_mb * 2**20),
                queue_size=settings.escalation_log_queue,
            )
    return log
