"""Kept so `uvicorn serve.app:create_app --factory` and `from serve.app import create_app` keep
working; the app lives in `serve.api.app`."""

from serve.api.app import create_app
from serve.api.settings import Settings

__all__ = ["Settings", "create_app"]
