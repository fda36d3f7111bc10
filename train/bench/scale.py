"""Training and batch prediction at gateway scale, on rows made by perturbing labelled data.

A busy gateway sends a million requests a day; no labelled set of that size ships here, so
the benchmark grows `data/queries` by word-level edits (drop, insert or replace a word from
the set's own vocabulary, about one edit per ten words), keeping each row's tier and family.
The rows are near-duplicates, so their held-out scores say nothing about routing quality:
this measures time and memory only (quality is measured on `../shared/data`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from train.bench.child import CHILD, timed_train


def perturbed_queries(source: Path, rows: int, out: Path, seed: int = 0) -> Path:
    """Write `rows` labelled rows to `out` (JSONL), cycling through `source`'s rows."""
    files = sorted(source.glob("*.jsonl")) if source.is_dir() else [source]
    lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]
    base = [json.loads(line) for line in lines if line.strip()]
    if not base:
        raise ValueError(f"no labelled rows in {source}")
    vocab = sorted({w for r in base for w in r["text"].split()})
    rng = random.Random(seed)
    with out.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            row = base[i % len(base)]
            words = row["text"].split()
            for _ in range(max(1, len(words) // 10)):
                j, op = rng.randrange(len(words)), rng.random()
                if op < 0.4 and len(words) > 2:
                    del words[j]
                elif op < 0.8:
                    words.insert(j, rng.choice(vocab))
                else:
                    words[j] = rng.choice(vocab)
            record = {"id": f"{row['id']}-x{i}", "tier": row["tier"], "text": " ".join(words)}
            fh.write(json.dumps(record) + "\n")
    return out


def timed_predict(bundle: Path, data: Path, out: Path) -> dict[str, float]:
    """`rung predict` in a child pinned to one tokenizer thread: wall, CPU and rows/s."""
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", CHILD, "predict", "--model", str(bundle), "--data", str(data)]
    cmd += ["--out", str(out)]
    start, cpu0 = time.perf_counter(), os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu1 = time.perf_counter() - start, os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed: {proc.stderr.strip()[-2000:]}")
    cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system)
    with out.open(encoding="utf-8") as fh:
        rows = sum(1 for _ in fh)
    peak_kib = int(proc.stderr.rsplit("PEAK_RSS_KIB ", 1)[1].split()[0])
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "rows_per_s": round(rows / seconds),
        "rows_per_cpu_s": round(rows / max(cpu, 1e-9)),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def run_scale(source: Path, sizes: list[int], tmpdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        data = perturbed_queries(source, n, tmpdir / f"rows-{n}.jsonl")
        bundle = tmpdir / f"scale-{n}"
        fit = timed_train([str(data)], bundle)
        fit["rows_per_hour"] = round(n / fit["seconds"] * 3600)
        pred = timed_predict(bundle, data, tmpdir / f"pred-{n}.jsonl")
        out[str(n)] = {"train": fit, "predict": pred}
        data.unlink()
    return out


def print_scale(report: dict[str, Any]) -> None:
    print("\nAt scale (rows made by perturbing data/queries; time and memory only):\n")
    print(
        "| rows | train wall (s) | train peak RSS (MiB) | train rows/hour | predict rows/s "
        "(1 tokenizer thread) | predict rows per CPU-s | predict peak RSS (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in report.items():
        t, p = r["train"], r["predict"]
        print(
            f"| {int(n):,} | {t['seconds']:.1f} | {t['peak_rss_mib']:.0f} | "
            f"{t['rows_per_hour']:,} | {p['rows_per_s']:,} | {p['rows_per_cpu_s']:,} | "
            f"{p['peak_rss_mib']:.0f} |"
        )
