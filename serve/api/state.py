"""The served model and how it changes without downtime.

A new bundle is loaded fully and answers a smoke query before one attribute assignment makes
it current, so a request that already holds the old `Served` finishes on it. A bundle that
fails to load, to answer, or to match the served ladder is refused: the old one keeps
serving, and the refusal is logged and kept for /readyz.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from serve.api.metrics import Metrics
from serve.api.settings import Settings
from serve.model.bundle import EmbedderKind
from serve.model.checks import check_router
from serve.model.errors import RungError
from serve.model.registry import fallback_candidates, pointer_folder
from serve.model.runtime import Router

log = logging.getLogger("rung.serve")

Identity = tuple[str, int, int]


@dataclass(frozen=True)
class Served:
    """A loaded, smoke-tested bundle plus everything the hot path precomputes from it."""

    router: Router
    identity: Identity
    names: tuple[str, ...]
    index: dict[str, int]
    threshold: float
    ref: dict[str, str]  # {"name", "version"}: the same dict in every response
    names_json: tuple[str, ...]  # each tier name JSON-encoded once, for the hot path
    ref_json: str
    token_cap: int
    loaded_at: str
    smoke: list[float]

    @property
    def path(self) -> Path:
        return self.router.root


@dataclass(frozen=True)
class Attempt:
    """One reload attempt, kept so /readyz can say what happened and why."""

    at: str
    reason: str
    target: str
    ok: bool
    version: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fallback:
    """At start-up the pointer named a bundle that failed its checks; this one serves instead,
    until the pointer moves to a bundle that passes."""

    pointer: str  # the pointer (models/current)
    names: str  # the bundle it names, refused
    error: str  # why it was refused
    serving: str  # the bundle served instead: the newest good one in the pointer's history

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def identity(source: Path) -> Identity:
    """Where `source` leads now: resolved path, folder inode, manifest mtime.

    A moved symlink changes the path; a bundle replaced in place (atomic rename) changes
    the inode; both mean "load again". A source that leads nowhere gets inode 0.
    """
    target = source.resolve()
    try:
        folder = os.stat(target)
        manifest = os.stat(target / "manifest.json")
    except OSError:
        return str(target), 0, 0
    return str(target), folder.st_ino, manifest.st_mtime_ns


def apply_token_cap(router: Router, cap: int | None) -> int:
    """Lower the tokenizer's truncation to `cap` tokens; return the cap in force."""
    spec = router.manifest.embedder
    if cap is None or cap >= spec.token_cap:
        return spec.token_cap
    specials = 2 if spec.kind is EmbedderKind.TRANSFORMER else 0
    router.embedder.tokenizer.enable_truncation(max_length=cap + specials)  # type: ignore[attr-defined]
    return cap


@dataclass
class ModelHolder:
    """Owns the current `Served`; every change goes through `reload` under one lock."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    current: Served | None = None
    last_attempt: Attempt | None = None
    last_refusal: Attempt | None = None
    fallback: Fallback | None = None
    _refused: Identity | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def source(self) -> Path:
        return self.settings.source()

    def load_first(self) -> Served:
        """Load at start-up. When the source is a models folder's `current` pointer and its
        bundle fails, serve the newest good bundle in the pointer's history instead: one bad
        promotion must not become an outage at the next restart. With nothing servable,
        raise (there is nothing to keep serving)."""
        attempt = self.reload("startup")
        if self.current is not None:
            return self.current
        folder = pointer_folder(self.source)
        if folder is not None:
            served = self._fall_back(folder, attempt)
            if served is not None:
                return served
        where = " and no earlier bundle in its history passes either" if folder else ""
        raise RungError(f"cannot serve {self.source}: {attempt.error}{where}")

    def _fall_back(self, folder: Path, attempt: Attempt) -> Served | None:
        refused = Path(attempt.target).name
        for name in fallback_candidates(folder, exclude=refused):
            ident = identity(folder / name)
            try:
                served = self._load(ident)
            except Exception as exc:  # try the next one; say why this one failed
                log.error("fallback candidate %s refused too: %s", name, exc)
                continue
            with self._lock:
                self.current = served
                self.fallback = Fallback(str(self.source), refused, attempt.error or "", name)
            self.metrics.set_model(served.ref["name"], served.ref["version"])
            self.metrics.set_fallback(True)
            log.error(
                "%s names %s, which fails its checks (%s); serving %s (%s), the newest good "
                "bundle in the pointer's history, until the pointer moves",
                self.source,
                refused,
                attempt.error,
                name,
                served.ref["version"],
            )
            return served
        return None

    def _load(self, ident: Identity) -> Served:
        start = time.perf_counter()
        router = Router.load(ident[0])
        cap = apply_token_cap(router, self.settings.token_cap)
        smoke = check_router(router)
        names = tuple(router.tier_names)
        old = self.current
        if old is not None and names != old.names and not self.settings.allow_ladder_change:
            raise RungError(
                f"incompatible bundle: ladder {list(names)} differs from the served "
                f"{list(old.names)} (restart, or set RUNG_ALLOW_LADDER_CHANGE)"
            )
        m = router.manifest
        log.info(
            "loaded %s from %s in %.0f ms",
            m.version,
            router.root,
            (time.perf_counter() - start) * 1e3,
        )
        return Served(
            router=router,
            identity=ident,
            names=names,
            index={n: i for i, n in enumerate(names)},
            threshold=m.threshold,
            ref={"name": m.name, "version": m.version},
            token_cap=cap,
            names_json=tuple(json.dumps(n) for n in names),
            ref_json=json.dumps({"name": m.name, "version": m.version}, separators=(",", ":")),
            loaded_at=_now(),
            smoke=smoke,
        )

    def reload(self, reason: str) -> Attempt:
        """Load what the source points to now and swap it in, or refuse and keep the old."""
        with self._lock:
            ident = identity(self.source)
            try:
                if not ident[1]:
                    raise RungError(
                        f"{self.source} does not lead to a bundle (no "
                        f"{Path(ident[0]) / 'manifest.json'})"
                    )
                served = self._load(ident)
            except Exception as exc:  # a broken bundle must never take the server down
                error = str(exc) if isinstance(exc, RungError) else f"{type(exc).__name__}: {exc}"
                return self._refuse(reason, ident, error)
            self.current = served  # the swap: one reference assignment
            self._refused = None
            if self.fallback is not None:
                self.fallback = None
                self.metrics.set_fallback(False)
            self.metrics.set_model(served.ref["name"], served.ref["version"])
            self.metrics.reload_result("ok")
            attempt = Attempt(_now(), reason, ident[0], True, version=served.ref["version"])
            self.last_attempt = attempt
            return attempt

    def _refuse(self, reason: str, ident: Identity, error: str) -> Attempt:
        attempt = Attempt(_now(), reason, ident[0], False, error=error)
        self._refused = ident
        self.last_attempt = self.last_refusal = attempt
        self.metrics.reload_result("refused")
        still = f"still serving {self.current.ref['version']}" if self.current else "none served"
        log.error("refused model (%s) %s: %s; %s", reason, ident[0], error, still)
        return attempt

    def changed(self) -> bool:
        """Whether the source now leads somewhere other than the served or refused bundle."""
        ident = identity(self.source)
        return ident != (self.current.identity if self.current else None) and (
            ident != self._refused
        )

    def poll(self) -> Attempt | None:
        return self.reload("pointer moved") if self.changed() else None

    async def reload_async(self, reason: str) -> Attempt:
        return await asyncio.to_thread(self.reload, reason)

    async def watch(self, interval: float) -> None:
        """Poll the source every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.changed():
                    await self.reload_async("pointer moved")
            except Exception:  # a watcher that dies silently would be worse than a log line
                log.exception("model watcher error")
