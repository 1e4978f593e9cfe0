"""Timestamps as the wire writes them (RFC 3339, UTC), shared by the server and its clients."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)


def format_timestamp(us: int) -> str:
    """RFC 3339 UTC with exactly six fractional digits (the SDK compares these as strings)."""
    seconds, micros = divmod(us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def parse_timestamp_ns(text: str) -> int:
    """Parse RFC 3339 (0-9 fractional digits, any offset) into nanoseconds; ValueError if bad."""
    match = _RFC3339.match(text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    moment = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
    )
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        try:
            moment -= sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        except OverflowError:
            raise ValueError(f"timestamp out of range: {text!r}") from None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    nanos = int((fraction or "0").ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos
