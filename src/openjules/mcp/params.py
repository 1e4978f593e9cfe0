"""Parameter types shared by several tools (their descriptions end up in the JSON schema
the model reads)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

SessionId = Annotated[
    str,
    Field(
        min_length=1,
        description="The session: its id (e.g. 8123456789012345) or name (sessions/ID).",
    ),
]
