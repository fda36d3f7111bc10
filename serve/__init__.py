"""rung's serving side: everything a server, a replica or a gateway needs, and nothing of training.

Rooms, each importing only from the rooms listed before it (tests/test_architecture.py checks):

- `serve.model`: the bundle on disk and what runs it: ladder, manifest, ONNX runtime, tokenizer
  shortcut, text extraction, the `current` pointer. No HTTP, no FastAPI.
- `serve.api`: the request path: app, fast lane, routes, schemas, replies, settings, metrics,
  the served state and the per-request decision. Imports `serve.model` only.
- `serve.gateway`: code that runs inside a gateway (the rung client). Imports `serve.model` only,
  never `serve.api`, so a gateway does not load the server.
- `serve.bench`: the load generator and the no-op floor for `rung bench serve`; the request path
  never imports it.

`serve` never imports `train`. `serve.app` and `serve.client` keep the documented import paths.
"""
