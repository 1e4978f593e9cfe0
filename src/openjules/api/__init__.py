"""The HTTP API: ``create_app(settings, runner=…)`` builds the FastAPI application."""

from openjules.api.app import create_app, end_streams

__all__ = ["create_app", "end_streams"]
