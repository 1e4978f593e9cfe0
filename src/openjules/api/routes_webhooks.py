"""webhooks.create/list/get/delete, webhooks.deliveries.list and the ``:test`` verb (an
extension of v1alpha: a user's endpoints for signed events about their sessions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from starlette.responses import Response

from openjules._errors import FieldViolation, InvalidArgument, NotFound
from openjules._types import (
    CreateWebhookRequest,
    EmptyRequest,
    ListWebhookDeliveriesResponse,
    ListWebhooksResponse,
    Webhook,
)
from openjules.api import pagination, responses
from openjules.api.auth import current_user
from openjules.api.limits import checked_request
from openjules.api.state import AppState
from openjules.store import webhook_outbox, webhooks
from openjules.store.users import User

# Every text a request brings is checked before the route sees it (api.limits).
router = APIRouter(prefix="/v1alpha", dependencies=[Depends(checked_request)])
CurrentUser = Annotated[User, Depends(current_user)]
WEBHOOKS_DEFAULT = 30
DELIVERIES_DEFAULT = 50


def _no_filter(raw: str | None) -> None:
    if raw:
        raise InvalidArgument(
            "This list takes no filter.",
            field_violations=[FieldViolation("filter", "Not supported on this list.")],
        )


@router.post("/webhooks", name="create_webhook", response_model=Webhook, summary="webhooks.create")
async def create_webhook(
    request: Request,
    user: CurrentUser,
    body: Annotated[CreateWebhookRequest | None, Body()] = None,
) -> Response:
    """The new webhook, with its signing ``secret`` (shown only here). The URL's host
    must resolve to public addresses unless the operator allows others."""
    state = AppState.of(request)
    record = await webhooks.register(
        state.db,
        owner_id=user.id,
        request=body or CreateWebhookRequest(),
        allow_private=state.settings.webhooks_allow_private,
    )
    return responses.wire(record.to_wire(with_secret=True))


@router.get(
    "/webhooks", name="list_webhooks", response_model=ListWebhooksResponse, summary="webhooks.list"
)
async def list_webhooks(
    request: Request, user: CurrentUser, query: pagination.ListParams
) -> Response:
    size = pagination.page_size(query.page_size, default=WEBHOOKS_DEFAULT)
    _no_filter(query.filter)
    async with AppState.of(request).db.read() as conn:
        page, token = await webhooks.list_page(
            conn, owner_id=user.id, page_size=size, page_token=query.page_token
        )
    return responses.list_body(
        key="webhooks",
        items=[record.to_wire().to_json().decode() for record in page],
        next_page_token=token,
    )


@router.get(
    "/webhooks/{webhook_id}", name="get_webhook", response_model=Webhook, summary="webhooks.get"
)
async def get_webhook(request: Request, user: CurrentUser, webhook_id: str) -> Response:
    async with AppState.of(request).db.read() as conn:
        record = await webhooks.get(conn, owner_id=user.id, webhook_id=webhook_id)
    return responses.wire(record.to_wire())


@router.delete(
    "/webhooks/{webhook_id}",
    name="delete_webhook",
    responses=responses.EMPTY_RESPONSE,
    summary="webhooks.delete",
)
async def delete_webhook(request: Request, user: CurrentUser, webhook_id: str) -> Response:
    """The webhook and its undelivered events: nothing more is sent to it."""
    async with AppState.of(request).db.write() as conn:
        await webhooks.delete_webhook(conn, owner_id=user.id, webhook_id=webhook_id)
    return responses.empty()


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    name="list_webhook_deliveries",
    response_model=ListWebhookDeliveriesResponse,
    summary="webhooks.deliveries.list",
)
async def list_deliveries(
    request: Request, user: CurrentUser, webhook_id: str, query: pagination.ListParams
) -> Response:
    """Recent delivery attempts, newest first: each with the event's ``webhookId`` (the
    ``webhook-id`` header), its type, the attempt number, the receiver's HTTP ``status``
    (absent when no answer came) or the ``error``, and the time."""
    size = pagination.page_size(query.page_size, default=DELIVERIES_DEFAULT)
    _no_filter(query.filter)
    async with AppState.of(request).db.read() as conn:
        page, token = await webhooks.list_deliveries(
            conn,
            owner_id=user.id,
            webhook_id=webhook_id,
            page_size=size,
            page_token=query.page_token,
        )
    return responses.list_body(
        key="deliveries",
        items=[delivery.to_json().decode() for delivery in page],
        next_page_token=token,
    )


@router.post(
    "/webhooks/{webhook_id}:test",
    name="test_webhook",
    responses=responses.EMPTY_RESPONSE,
    summary="webhooks.test",
)
async def send_test_event(
    request: Request,
    user: CurrentUser,
    webhook_id: str,
    _body: Annotated[EmptyRequest | None, Body()] = None,
) -> Response:
    """Queue a ``webhook.test`` event for this webhook (whatever event types it takes)
    and answer ``{}`` at once; the delivery, its retries and their outcome show in
    ``GET /v1alpha/webhooks/{id}/deliveries``."""
    state = AppState.of(request)
    async with state.db.write() as conn:
        await webhooks.get(conn, owner_id=user.id, webhook_id=webhook_id)
        await webhook_outbox.record_test(conn, webhook_id=webhook_id)
    return responses.empty()


@router.post("/webhooks/{name}", include_in_schema=False)
async def unknown_webhook_verb(name: str) -> Response:
    """A POST to a webhook without a known ``:verb`` (listed last, so verbs match first)."""
    verb = name.partition(":")[2]
    if verb:
        raise NotFound(f"Unknown method {verb!r} on webhooks.")
    raise NotFound(f"POST is not supported on webhooks/{name}; use a :verb such as :test.")
