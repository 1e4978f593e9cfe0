"""Page sizes and tokens as Google's list methods define them (AIP-158)."""

from __future__ import annotations

from openjules._errors import FieldViolation, InvalidArgument

MAX_PAGE_SIZE = 100
SESSIONS_DEFAULT = 30
ACTIVITIES_DEFAULT = 50
SOURCES_DEFAULT = 30


def page_size(raw: str | None, *, default: int) -> int:
    """Unset or 0 means the default, values over 100 are coerced to 100, negatives are 400."""
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        raise InvalidArgument(
            f"Invalid value for pageSize: {raw!r} is not an integer.",
            field_violations=[FieldViolation("page_size", "must be an integer")],
        ) from None
    if size < 0:
        raise InvalidArgument(
            f"Invalid value for pageSize: {size}; it must not be negative.",
            field_violations=[FieldViolation("page_size", "must not be negative")],
        )
    if size == 0:
        return default
    return min(size, MAX_PAGE_SIZE)


def nanos_token(raw: str | None) -> int | None:
    """An activities page token: a decimal nanosecond timestamp."""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise InvalidArgument(
            f"Invalid page token {raw!r}: pass the nextPageToken of a previous response."
        )
    return int(raw)
