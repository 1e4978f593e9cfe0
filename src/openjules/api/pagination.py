"""Page sizes and tokens as Google's list methods define them (AIP-158)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

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


@dataclass(frozen=True)
class ListQuery:
    """The query parameters every list method takes."""

    page_size: str | None
    page_token: str | None
    filter: str | None


def _list_query(
    page_size: Annotated[str | None, Query(alias="pageSize")] = None,
    page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    filter: Annotated[str | None, Query()] = None,
    # The PyPI client `jules-api` sends the token as nextPageToken=.
    next_page_token: Annotated[
        str | None, Query(alias="nextPageToken", include_in_schema=False)
    ] = None,
) -> ListQuery:
    return ListQuery(
        page_size=page_size, page_token=page_token or next_page_token or None, filter=filter
    )


ListParams = Annotated[ListQuery, Depends(_list_query)]
