"""Page sizes and tokens as Google's list methods define them (AIP-158)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from openjules._errors import FieldViolation, InvalidArgument

MAX_PAGE_SIZE = 100
# A page stops growing once its items pass this many bytes: AIP-158 lets a page be shorter
# than pageSize, and its nextPageToken then starts at the first item left out. Lists
# echo every session's prompt; this bounds what one list request costs the server.
MAX_PAGE_BYTES = 4 * 1024 * 1024
SESSIONS_DEFAULT = 30
ACTIVITIES_DEFAULT = 50
SOURCES_DEFAULT = 30
INT32 = re.compile(r"[+-]?[0-9]{1,10}", re.ASCII)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def page_size(raw: str | None, *, default: int) -> int:
    """Unset or 0 means the default, values over 100 are coerced to 100, negatives are 400.

    The value must be an int32 written in ASCII digits, as Google's front end parses it:
    an empty value, ``1_000``, `` 1`` or non-ASCII digits are 400, not coerced."""
    if raw is None:
        return default
    if not INT32.fullmatch(raw) or not INT32_MIN <= int(raw) <= INT32_MAX:
        raise InvalidArgument(
            f"Invalid value at 'page_size' (TYPE_INT32), {raw!r}",
            field_violations=[FieldViolation("page_size", "must be a 32-bit integer")],
        )
    size = int(raw)
    if size < 0:
        raise InvalidArgument(
            f"Invalid value for pageSize: {size}; it must not be negative.",
            field_violations=[FieldViolation("page_size", "must not be negative")],
        )
    if size == 0:
        return default
    return min(size, MAX_PAGE_SIZE)


def fitting(sizes: Sequence[int], *, budget: int = MAX_PAGE_BYTES) -> int:
    """How many leading items of ``sizes`` bytes fit in ``budget`` (at least one, so a
    page of a single large item still moves the client on)."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > budget and count > 0:
            return count
    return len(sizes)


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
