"""The request path: FastAPI app, fast lane, routes, schemas, replies, settings, metrics, and the
served model's state. Imports `serve.model`, never `serve.bench`, `serve.gateway` or `train`."""
