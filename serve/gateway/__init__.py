"""Code that runs inside an LLM gateway and talks to a rung server: the client and the gateway
integrations. Imports `serve.model` at most, never the server (`serve.api`)."""
