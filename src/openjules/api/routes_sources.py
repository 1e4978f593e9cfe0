"""sources.list and sources.get (names contain slashes: ``sources/github/OWNER/REPO``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from openjules._errors import InvalidArgument
from openjules._types import ListSourcesResponse, Source
from openjules.api import pagination, responses
from openjules.api.auth import current_user
from openjules.api.filters import SOURCE_FIELDS, parse_filter
from openjules.api.limits import checked_request
from openjules.api.state import AppState
from openjules.store import sources
from openjules.store.users import User

# Every text a request brings is checked before the route sees it (api.limits).
router = APIRouter(prefix="/v1alpha", dependencies=[Depends(checked_request)])
CurrentUser = Annotated[User, Depends(current_user)]


@router.get(
    "/sources", name="list_sources", response_model=ListSourcesResponse, summary="sources.list"
)
async def list_sources(
    request: Request,
    _user: CurrentUser,
    query: pagination.ListParams,
) -> Response:
    size = pagination.page_size(query.page_size, default=pagination.SOURCES_DEFAULT)
    flt = parse_filter(query.filter, SOURCE_FIELDS)
    token = query.page_token
    if token is not None and not sources.SOURCE_ID.match(token):
        raise InvalidArgument(
            f"Invalid page token {token!r}: pass the nextPageToken of a previous response."
        )
    async with AppState.of(request).db.read() as conn:
        records, next_token = await sources.list_page(conn, flt=flt, page_size=size, start_id=token)
    return responses.wire(
        ListSourcesResponse(sources=[r.to_wire() for r in records], next_page_token=next_token)
    )


@router.get(
    "/sources/{source_id:path}", name="get_source", response_model=Source, summary="sources.get"
)
async def get_source(request: Request, _user: CurrentUser, source_id: str) -> Response:
    async with AppState.of(request).db.read() as conn:
        record = await sources.get(conn, name=f"sources/{source_id}")
    return responses.wire(record.to_wire())
