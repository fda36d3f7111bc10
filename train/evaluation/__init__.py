"""Evaluation: quality-vs-cost metrics, baselines, operating points, scoring, the promotion gate,
and the report. Imports `train.data` and `serve.model`, never `train.fit`."""
