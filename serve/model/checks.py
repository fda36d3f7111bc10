"""The checks a bundle must pass before it is served or promoted, shared by both.

Promotion (`rung models promote`, `rollback`, `retrain`) and a server loading a bundle run the
same code: every served file against its sha256 in the manifest, the ONNX graphs and the
tokenizer loaded by the serving runtime, and the smoke query answered by both the batch and
the single-text path. So a bundle that a server would refuse is never promoted.
"""

from __future__ import annotations

import math
from pathlib import Path

from serve.model.bundle import BundleError
from serve.model.errors import RungError
from serve.model.runtime import SMOKE_TEXT, Router


class BundleRefused(BundleError):
    """A bundle that exists but fails the serving checks (exit status 1 on the command line)."""


def check_router(router: Router) -> list[float]:
    """Answer the smoke query on both inference paths; return its p_sufficient."""
    smoke = [float(x) for x in router.smoke()]
    fast, _, cost = router.estimates_one(SMOKE_TEXT)
    if (
        len(fast) != len(smoke)
        or not all(math.isfinite(x) for x in fast)
        or max(abs(a - b) for a, b in zip(fast, smoke, strict=True)) > 1e-4
    ):
        raise BundleError("the single-text path disagrees with the batch path on the smoke query")
    if not all(math.isfinite(c) and c >= 0 for c in cost):
        raise BundleError(f"the cost estimate on the smoke query is not usable: {cost}")
    return smoke


def check_bundle(path: str | Path) -> Router:
    """Load `path` as a server would and answer the smoke query, or raise `BundleRefused`."""
    try:
        router = Router.load(path)
        check_router(router)
    except RungError as exc:
        raise BundleRefused(str(exc)) from None
    except Exception as exc:  # onnxruntime, numpy, tokenizers: any failure is a refusal
        raise BundleRefused(f"{Path(path)}: {type(exc).__name__}: {exc}") from None
    return router
