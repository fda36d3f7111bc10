"""`rung serve`: the classification service on uvicorn (uvloop + httptools).

Only server-side modules are imported: no torch, sentence-transformers or scikit-learn.
Settings reach uvicorn workers through RUNG_* environment variables (`create_app` reads them
in each worker), so flags and environment behave the same with one worker or many.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP = "serve.app:create_app"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model bundle over HTTP (POST /classify)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--model",
        type=Path,
        default=None,
        help="bundle folder (default: models/current if it exists, else models/default)",
    )
    src.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="models folder; serve what its `current` pointer names, and follow it when it moves",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (each loads the model; default 1)",
    )
    p.add_argument("--log-level", default=None, help="default: RUNG_LOG_LEVEL or info")
    p.add_argument(
        "--access-log",
        action="store_true",
        help="uvicorn's per-request access log (off: it costs more than a decision)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="load the model, answer the smoke query, print what would be served, and exit",
    )
    p.set_defaults(handler=run)


@dataclass(frozen=True)
class StartupCheck:
    """What a worker will serve, found by loading it once in the CLI process."""

    version: str
    path: Path
    ladder: str
    threshold: float
    smoke: str  # p_sufficient of the smoke query, per tier
    fallback: str | None  # why the pointer's own bundle is not served, if it is not


@dataclass(frozen=True)
class ServeConfig:
    env: dict[str, str | None]  # RUNG_* variables for the workers; None: remove
    uvicorn: dict[str, Any]  # keyword arguments for uvicorn.run
    served: StartupCheck


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """Validate flags, settings and the bundle up front, so mistakes end as one line rather
    than a traceback from inside a worker."""
    from pydantic import ValidationError

    from serve.api.settings import Settings
    from train.cli import CommandError

    if not 0 < args.port < 65536:
        raise CommandError(f"--port must lie in 1..65535, got {args.port}")
    if args.workers < 1:
        raise CommandError(f"--workers must be >= 1, got {args.workers}")
    overrides: dict[str, Any] = {}
    if args.model is not None:  # a flag beats the environment
        overrides.update(model=args.model.absolute(), models_dir=None)
    elif args.models_dir is not None:
        overrides.update(models_dir=args.models_dir.absolute(), model=None)
    if args.log_level:
        overrides["log_level"] = args.log_level
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "_".join(str(x) for x in first["loc"]) or "settings"
        raise CommandError(f"setting {field} (RUNG_{field.upper()}): {first['msg']}") from None
    source = settings.source()
    if not (source / "manifest.json").is_file():
        hint = (
            ""
            if settings.model or settings.models_dir
            else (" (train one: rung train --data data/queries --out models/default)")
        )
        raise CommandError(f"no model bundle at {source}{hint}")
    served = startup_check(settings)
    model = settings.model
    if model is None and settings.models_dir is None:
        model = source.absolute()  # pin the default: a worker's cwd may differ
    env = {
        "RUNG_MODEL": str(model) if model is not None else None,
        "RUNG_MODELS_DIR": str(settings.models_dir) if settings.models_dir else None,
        "RUNG_LOG_LEVEL": settings.log_level,
    }
    kwargs = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "factory": True,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": args.access_log,
        "log_level": settings.log_level.lower(),
    }
    return ServeConfig(env=env, uvicorn=kwargs, served=served)


def startup_check(settings: Any) -> StartupCheck:
    """Load what a worker would load at start-up (with its fallback along the pointer's
    history), so a bundle that cannot be served ends here as one line and exit status 1,
    not as a traceback from every worker. Quiet: the workers log what they serve."""
    import logging

    from serve.api.state import ModelHolder
    from serve.model.errors import RungError
    from train.cli import Refused

    holder = ModelHolder(settings)
    logger = logging.getLogger("rung.serve")
    was, logger.disabled = logger.disabled, True
    try:
        served = holder.load_first()
    except RungError as exc:
        raise Refused(str(exc)) from None
    finally:
        logger.disabled = was
    p = ", ".join(f"{n} {x:.3f}" for n, x in zip(served.names, served.smoke, strict=True))
    fb = holder.fallback
    note = (
        f"{fb.pointer} names {fb.names}, which fails its checks ({fb.error}); "
        f"serving {fb.serving}, the newest good bundle in its history"
        if fb
        else None
    )
    return StartupCheck(
        version=served.ref["version"],
        path=served.path,
        ladder=" < ".join(served.names),
        threshold=served.threshold,
        smoke=p,
        fallback=note,
    )


def run(args: argparse.Namespace) -> int:
    cfg = serve_config(args)
    for key, value in cfg.env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if args.check:
        return _check(cfg)
    import uvicorn

    with metrics_dir(cfg.uvicorn["workers"]):
        uvicorn.run(APP, **cfg.uvicorn)
    return 0


@contextmanager
def metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for this run (removed after), so
    /metrics on any worker counts every worker and never a previous run. One set by the
    operator is used as it is (wiping it between runs is then theirs to do)."""
    from serve.api.metrics import MULTIPROC_ENV

    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="rung-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _check(cfg: ServeConfig) -> int:
    served = cfg.served
    if served.fallback:
        print(f"fallback: {served.fallback}")
    print(f"ok: {served.version} from {served.path}")
    print(
        f"ladder {served.ladder}; threshold {served.threshold:.4f}; "
        f"smoke p_sufficient: {served.smoke}"
    )
    print(
        f"would listen on http://{cfg.uvicorn['host']}:{cfg.uvicorn['port']} with "
        f"{cfg.uvicorn['workers']} worker(s)"
    )
    return 0
