"""Keyset page tokens of the newest-first lists (sessions, webhooks): an opaque
``(create_time, id)`` of the next item, tagged with the list it belongs to."""

from __future__ import annotations

import base64
import binascii
import re

from openjules._errors import InvalidArgument


def encode(kind: str, create_time: int, item_id: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{create_time}:{item_id}".encode()).decode()


def bad_token(token: str) -> InvalidArgument:
    return InvalidArgument(
        f"Invalid page token {token!r}: pass the nextPageToken of a previous response."
    )


def decode(token: str, *, kind: str, item_id: re.Pattern[str]) -> tuple[int, str]:
    """``(create_time, id)``; 400 INVALID_ARGUMENT for a token this list did not issue."""
    try:
        found, create_time, found_id = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if found != kind or not item_id.match(found_id):
            raise ValueError(token)
        if not 0 <= int(create_time) < 2**63:  # beyond the BIGINT column
            raise ValueError(token)
        return int(create_time), found_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_token(token) from None
