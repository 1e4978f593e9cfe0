"""openjules: a self-hostable server that speaks the Jules REST API (v1alpha).

Importing this package has no side effects. A server process is composed by
``openjules.server`` (the engine from ``openjules.engine.service.EngineService``, the HTTP
app from ``openjules.api.create_app(settings, runner=…)``).
"""

from openjules._errors import (
    AlreadyExists,
    APIError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "__version__",
]
