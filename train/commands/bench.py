"""`rung bench serve|train|loop|collect`: the serving benchmark (default), the training one,
the closed retraining loop on real outcome data, or `rung collect`'s throughput."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure serving latency / throughput, or training")
    p.add_argument(
        "target",
        nargs="?",
        choices=["serve", "train", "loop", "gateway", "collect"],
        default="serve",
        help="serve: the HTTP server against a no-op FastAPI floor (default); "
        "train: the training pipeline; loop: retraining from simulated gateway logs; "
        "gateway: rung's added latency through LiteLLM (needs the [litellm] extra); "
        "collect: rung collect against a loopback stub, next to bare LiteLLM calls",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="[serve, gateway] bundle (default: models/current if it exists, else models/default)",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=None,
        help="[serve] timed sequential HTTP requests per server (default 3000); "
        "[gateway] timed rounds per path (default 300)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="[serve] connections in the throughput phase (default 8); "
        "[collect] calls in flight (default 32)",
    )
    p.add_argument(
        "--calls", type=int, default=2000, help="[collect] model calls per round (default 2000)"
    )
    p.add_argument("--rounds", type=int, default=2, help="[collect] rounds, best kept (default 2)")
    p.add_argument(
        "--load-requests",
        type=int,
        default=4000,
        help="[serve] requests per server per throughput run (default 4000)",
    )
    p.add_argument(
        "--in-process",
        type=int,
        default=5000,
        help="[serve] in-process decisions per input set (default 5000)",
    )
    p.add_argument(
        "--data", default="data/queries", help="[train] labelled data (default data/queries)"
    )
    p.add_argument(
        "--shared",
        type=Path,
        default=Path("../shared/data"),
        help="[train, loop] outcome data folder (default ../shared/data)",
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="[train] also time a first run with an empty embedding cache",
    )
    p.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=None,
        help="[train] also train and predict at these sizes, on rows made by perturbing --data "
        "(e.g. 50000 1000000)",
    )
    p.add_argument(
        "--skip-quality", action="store_true", help="[train] skip routing quality on --shared"
    )
    p.add_argument("--out", type=Path, default=Path("reports/loop"), help="[loop] output folder")
    p.add_argument(
        "--explore",
        type=float,
        nargs="+",
        default=[0.0, 0.1],
        help="[loop] exploration rates to replay (default 0 0.1)",
    )
    p.add_argument(
        "--salts",
        type=int,
        nargs="+",
        default=[0],
        help="[loop] slice hashes to repeat the loop with (spread of the gain)",
    )
    p.add_argument("--plot", type=Path, default=None, help="[loop] PNG for the first salt")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.target == "train":
        from train.bench import train as bench_train
        from train.cli import CommandError

        if any(n < 100 for n in args.rows or []):
            raise CommandError("--rows sizes must be at least 100")

        return int(bench_train.run(args) or 0)
    if args.target == "loop":
        from train.bench import loop

        return int(loop.run(args) or 0)
    if args.target == "collect":
        from train.bench import collect
        from train.cli import CommandError

        if args.calls < 2 or (args.concurrency or 32) < 2 or args.rounds < 1:
            raise CommandError("--calls and --concurrency must be >= 2, --rounds >= 1")

        return int(collect.run(args) or 0)
    if args.target == "gateway":
        return run_gateway(args)
    return run_serve(args)


def run_gateway(args: argparse.Namespace) -> int:
    import sys

    from train.cli import CommandError

    try:
        from serve.bench.gateway import GatewayBenchConfig, markdown
        from serve.bench.gateway import run as bench
    except ImportError as exc:
        raise CommandError(
            f'rung bench gateway needs LiteLLM ({exc.name} is missing): pip install -e ".[litellm]"'
        ) from None
    from serve.api.settings import Settings

    requests = 300 if args.requests is None else args.requests
    if requests < 1:
        raise CommandError("--requests must be >= 1")
    model = args.model or Settings(model=None, models_dir=None).source()
    cfg = GatewayBenchConfig(
        model=model, requests=requests, log=lambda msg: print(msg, file=sys.stderr)
    )
    result = bench(cfg)
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import sys

    from serve.api.settings import Settings
    from serve.bench.harness import BenchConfig, markdown
    from serve.bench.harness import run as bench
    from train.cli import CommandError

    if args.concurrency is None:
        args.concurrency = 8
    if args.requests is None:
        args.requests = 3000
    for name in ("requests", "concurrency", "load_requests", "in_process"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1")
    model = args.model or Settings(model=None, models_dir=None).source()
    cfg = BenchConfig(
        model=model,
        requests=args.requests,
        concurrency=args.concurrency,
        load_requests=args.load_requests,
        in_process=args.in_process,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    result = bench(cfg)
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
