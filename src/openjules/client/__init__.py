"""The Python SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio) for the Jules API.

    from openjules.client import Client

    with Client(base_url="http://127.0.0.1:8080", api_key="...") as jules:
        session = jules.create_session(prompt="Fix the flaky test", source="acme/api")
        session = jules.wait(session, until=DONE)
        print(jules.patch(session).unidiff_patch)

Errors are the server's, rebuilt from its Google error envelope: ``NotFound``,
``PermissionDenied``, ``InvalidArgument``, ``FailedPrecondition``, ``Unauthenticated``,
``ResourceExhausted``, ``Unavailable`` (all ``APIError``); ``ConnectionFailed`` (an
``Unavailable``) when no answer came; ``Unsupported`` for an openjules extension on a
server without it; ``WaitTimeout`` when ``wait`` gives up.
"""

from openjules._errors import (
    AlreadyExists,
    APIError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from openjules._types import Activity, GitPatch, Session, Source, State
from openjules.client.async_client import AsyncClient
from openjules.client.config import ConfigError, Credentials
from openjules.client.errors import ConnectionFailed, Unsupported, WaitTimeout
from openjules.client.following import DONE, NEEDS_INPUT, SETTLED
from openjules.client.retries import RetryPolicy
from openjules.client.sync_client import Client

__all__ = [
    "DONE",
    "NEEDS_INPUT",
    "SETTLED",
    "APIError",
    "Activity",
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ConfigError",
    "ConnectionFailed",
    "Credentials",
    "FailedPrecondition",
    "GitPatch",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "Session",
    "Source",
    "State",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
    "WaitTimeout",
]
