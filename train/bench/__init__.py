"""Benchmarks: `rung bench train` (time, memory, routing quality) and `rung bench loop` (the
closed retraining loop on real outcome data)."""
