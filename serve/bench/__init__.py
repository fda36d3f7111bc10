"""`rung bench serve`: the load generator, the no-op FastAPI floor and the report. Not part of
the request path: nothing in `serve.api` or `serve.model` imports it."""
