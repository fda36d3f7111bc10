"""rung's training side: from data to a verified bundle, and the commands around it.

Rooms, each importing only from `serve.model` and the rooms listed before it
(tests/test_architecture.py checks):

- `train.data`: the dataset types, one reader per source layout, escalation logs, loading.
- `train.embedders`: training embedders (static distillation, transformer export) whose serving
  twins live in `serve.model.runtime`.
- `train.evaluation`: metrics, baselines, operating points, scoring, the promotion gate, reports.
- `train.fit`: heads, threshold calibration, ONNX export, the training pipeline, batch prediction.
- `train.loop`: retraining from escalation logs and the gateway simulation.
- `train.bench`: the training and retraining-loop benchmarks.
- `train.commands` and `train.cli`: the `rung` console script; may import anything.
"""
