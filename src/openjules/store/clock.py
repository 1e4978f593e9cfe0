"""Time and identifiers in the shapes the wire uses."""

from __future__ import annotations

import secrets
import time
import uuid

from openjules._timestamps import format_timestamp as format_timestamp
from openjules._timestamps import parse_timestamp_ns as parse_timestamp_ns


def now_us() -> int:
    return time.time_ns() // 1000


def new_session_id() -> str:
    """A 19-digit decimal id, like the ids Jules hands out."""
    return str(10**18 + secrets.randbelow(9 * 10**18))


def new_hex_id() -> str:
    """A 32-character lowercase hex id (activities, plans, plan steps)."""
    return uuid.uuid4().hex
