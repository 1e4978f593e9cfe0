"""Resource names as callers give them (an id, a full name, or the resource itself) turned
into the path segments the API wants."""

from __future__ import annotations

from urllib.parse import quote

from openjules._errors import InvalidArgument
from openjules._types import Session, Source

SessionRef = str | Session
SourceRef = str | Source

SESSIONS_PREFIX = "sessions/"
SOURCES_PREFIX = "sources/"
GITHUB_SOURCES_PREFIX = "sources/github/"


def session_id(ref: SessionRef) -> str:
    """``123``, ``sessions/123`` or a ``Session``: ``123``."""
    if isinstance(ref, Session):
        ref = ref.id or ref.name
    text = ref.strip().removeprefix(SESSIONS_PREFIX)
    if not text or "/" in text:
        raise InvalidArgument(f"Not a session id or name: {ref!r} (expected 123 or sessions/123)")
    return quote(text, safe="")


def source_name(ref: SourceRef) -> str:
    """``sources/github/o/r``, ``github/o/r``, ``o/r`` or a ``Source``: ``sources/github/o/r``."""
    if isinstance(ref, Source):
        return ref.name
    text = ref.strip().strip("/")
    if text.startswith(SOURCES_PREFIX):
        return text
    if text.startswith("github/"):
        return SOURCES_PREFIX + text
    if text.count("/") == 1 and all(text.split("/")):
        return GITHUB_SOURCES_PREFIX + text
    raise InvalidArgument(
        f"Not a source: {ref!r} (expected OWNER/REPO or sources/github/OWNER/REPO)"
    )


def activity_id(ref: str) -> str:
    """``abc`` or ``sessions/1/activities/abc``: ``abc``."""
    text = ref.strip().rsplit("/", 1)[-1]
    if not text:
        raise InvalidArgument(f"Not an activity id or name: {ref!r}")
    return quote(text, safe="")
