"""Commands run in a child process, so wall time and peak RSS are the command's own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# The child reports its own peak RSS, so each run's figure is its own, not a running max.
CHILD = (
    "import resource, sys\nfrom train.cli import main\nrc = main(sys.argv[1:])\n"
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
    "file=sys.stderr)\nsys.exit(rc)"
)


def timed_train(
    data: list[str], out: Path, ladder: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Run `rung train` in a child; wall seconds and the child's peak RSS in MiB."""
    cmd = [
        sys.executable,
        "-c",
        CHILD,
        "train",
        "--data",
        *data,
        "--out",
        str(out),
        "--quiet",
        "--overwrite",
    ]
    if ladder:
        cmd += ["--ladder", str(ladder)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"training failed: {proc.stderr.strip()[-2000:]}")
    peak_kib = int(proc.stderr.rsplit("PEAK_RSS_KIB ", 1)[1].split()[0])
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}
