"""Kept so `from serve.client import RungClient` keeps working; the client lives in
`serve.gateway.client`."""

from serve.gateway.client import Decision, RungClient

__all__ = ["Decision", "RungClient"]
