"""`collect(cfg)`: run the missing pairs, then write the outcome table and the summary.

The table and summary are rebuilt from the journal on every run, also after a budget stop or
Ctrl-C, so they always hold everything measured so far.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.collect.journal import Journal
from train.collect.prompts import CollectError
from train.collect.runner import CollectConfig, Collector, Progress, RunStats
from train.collect.summary import summarise
from train.collect.table import pair_records, write_table

DEFAULT_REQUESTS_PER_DAY = 10_000


@dataclass
class CollectOutcome:
    stats: RunStats
    summary: dict[str, Any]
    table: Path
    summary_path: Path
    journal: Path
    rows: int


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_outputs(
    cfg: CollectConfig, journal: Journal, stats: RunStats, per_day: int
) -> CollectOutcome:
    records = pair_records(cfg.prompts, cfg.ladder, journal)
    rows = write_table(cfg.out, cfg.prompts, cfg.ladder, records)
    doc = summarise(cfg.ladder, records, cfg.mode.value, per_day)
    doc["run"] = {
        "calls": stats.calls,
        "judge_calls": stats.judge_calls,
        "unknown": stats.errors,
        "reused_from_journal": stats.reused,
        "spend_usd": stats.spend_usd,
        "spend_total_usd": sum(r.spend for r in journal.records.values()),
        "max_cost_usd": cfg.max_cost,
        "stopped_for_budget": stats.stopped_for_budget,
        "pending": stats.pending,
        "aborted": stats.aborted,
        "table": str(cfg.out),
        "journal": str(cfg.journal_path),
        "rows": rows,
    }
    path = summary_path(cfg.out)
    path.write_text(json.dumps(_json_safe(doc), indent=1) + "\n", encoding="utf-8")
    return CollectOutcome(stats, doc, cfg.out, path, cfg.journal_path, rows)


def collect(
    cfg: CollectConfig,
    progress: Progress | None = None,
    requests_per_day: int = DEFAULT_REQUESTS_PER_DAY,
    sleep: Any = None,
) -> CollectOutcome:
    collector = Collector(cfg, progress, sleep)
    try:
        stats = asyncio.run(collector.run())
    except KeyboardInterrupt:
        write_outputs(cfg, collector.journal, collector.stats, requests_per_day)
        raise
    outcome = write_outputs(cfg, collector.journal, stats, requests_per_day)
    if stats.aborted:
        raise CollectError(stats.aborted)
    return outcome
