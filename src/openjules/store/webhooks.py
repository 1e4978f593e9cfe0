"""Webhooks (an extension of v1alpha): a user's endpoints for events about their sessions.

Create with validation, read, list (newest first), delete, and the attempts at delivering
to one (``webhook_attempts``, newest first). Whether a URL's host may be reached is the
caller's business (``openjules.outbound``: it resolves names, which a transaction should
not wait on); here the URL is checked for its form only.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from openjules._types import CreateWebhookRequest, Webhook, WebhookDelivery, WebhookEventType
from openjules.outbound import TargetRefused, resolve_target, split_url
from openjules.store import cursors, tables
from openjules.store.clock import format_timestamp, new_hex_id, now_us
from openjules.store.database import Database

MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 1000
# Webhooks per user: each one multiplies the events every change of theirs writes.
MAX_WEBHOOKS_PER_USER = 20
WEBHOOK_ID = re.compile(r"^[0-9a-f]{32}$")
# Bytes of randomness in a signing secret (Standard Webhooks asks for 24 to 64).
SECRET_BYTES = 32
SECRET_PREFIX = "whsec_"
_W = tables.webhooks.c
_A = tables.webhook_attempts.c


def check_webhook_id(webhook_id: str) -> str:
    if not WEBHOOK_ID.match(webhook_id):
        raise NotFound()
    return webhook_id


def new_secret() -> str:
    """``whsec_`` and base64 of random bytes: what ``standardwebhooks.Webhook`` takes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class WebhookRecord:
    id: str
    owner_id: int
    url: str
    event_types: list[WebhookEventType]  # empty: every type
    description: str
    secret: str
    create_time: int

    @classmethod
    def from_row(cls, row: Row[Any]) -> WebhookRecord:
        return cls(
            id=row.id,
            owner_id=row.owner_id,
            url=row.url,
            event_types=[WebhookEventType(t) for t in json.loads(row.event_types)],
            description=row.description,
            secret=row.secret,
            create_time=row.create_time,
        )

    def to_wire(self, *, with_secret: bool = False) -> Webhook:
        return Webhook(
            name=f"webhooks/{self.id}",
            id=self.id,
            url=self.url,
            event_types=self.event_types,
            description=self.description,
            create_time=format_timestamp(self.create_time),
            secret=self.secret if with_secret else "",
        )


@dataclass(frozen=True)
class NewWebhook:
    """A checked ``CreateWebhookRequest``."""

    url: str
    event_types: list[WebhookEventType]
    description: str


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, field_violations=[FieldViolation(field, message)])


def validate(request: CreateWebhookRequest) -> NewWebhook:
    """The request's url (an http or https URL with a host), event types (known ones,
    named if not; duplicates dropped) and description; 400 INVALID_ARGUMENT otherwise."""
    url = (request.url or "").strip()
    if not url:
        raise _invalid("url", "The url is required.")
    if len(url) > MAX_URL_CHARS:
        raise _invalid(
            "url", f"The url is {len(url)} characters long; the limit is {MAX_URL_CHARS}."
        )
    try:
        split_url(url)
    except TargetRefused as exc:
        raise _invalid("url", str(exc)) from None
    known = {t.value: t for t in WebhookEventType}
    event_types: list[WebhookEventType] = []
    for index, name in enumerate(request.event_types or []):
        if name not in known:
            raise _invalid(
                f"event_types[{index}]",
                f"Unknown event type {name!r}; known types are: {', '.join(known)}.",
            )
        if known[name] not in event_types:
            event_types.append(known[name])
    description = request.description or ""
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise _invalid(
            "description",
            f"The description is {len(description)} characters long; "
            f"the limit is {MAX_DESCRIPTION_CHARS}.",
        )
    return NewWebhook(url=url, event_types=event_types, description=description)


async def create(
    conn: AsyncConnection,
    *,
    owner_id: int,
    webhook: NewWebhook,
    max_per_user: int = MAX_WEBHOOKS_PER_USER,
) -> WebhookRecord:
    count = (
        await conn.execute(
            select(func.count()).select_from(tables.webhooks).where(_W.owner_id == owner_id)
        )
    ).scalar_one()
    if count >= max_per_user:
        raise FailedPrecondition(
            f"You have {count} webhooks, the most allowed; delete one before creating another."
        )
    record = WebhookRecord(
        id=new_hex_id(),
        owner_id=owner_id,
        url=webhook.url,
        event_types=webhook.event_types,
        description=webhook.description,
        secret=new_secret(),
        create_time=now_us(),
    )
    await conn.execute(
        tables.webhooks.insert().values(
            id=record.id,
            owner_id=owner_id,
            url=record.url,
            event_types=json.dumps([t.value for t in record.event_types]),
            description=record.description,
            secret=record.secret,
            create_time=record.create_time,
        )
    )
    return record


async def register(
    db: Database, *, owner_id: int, request: CreateWebhookRequest, allow_private: bool
) -> WebhookRecord:
    """webhooks.create for every front end: validate ``request``, check that the URL's
    host may be reached (before the transaction: a name lookup can take a while), create."""
    new = validate(request)
    try:
        await resolve_target(new.url, allow_private=allow_private)
    except TargetRefused as exc:
        message = str(exc)
        raise InvalidArgument(message, field_violations=[FieldViolation("url", message)]) from None
    async with db.write() as conn:
        return await create(conn, owner_id=owner_id, webhook=new)


async def get(conn: AsyncConnection, *, owner_id: int, webhook_id: str) -> WebhookRecord:
    row = (
        await conn.execute(
            select(tables.webhooks).where(
                _W.id == check_webhook_id(webhook_id), _W.owner_id == owner_id
            )
        )
    ).first()
    if row is None:
        raise NotFound()
    return WebhookRecord.from_row(row)


def encode_cursor(create_time: int, webhook_id: str) -> str:
    return cursors.encode("w1", create_time, webhook_id)


def decode_cursor(token: str) -> tuple[int, str]:
    return cursors.decode(token, kind="w1", item_id=WEBHOOK_ID)


async def list_page(
    conn: AsyncConnection, *, owner_id: int, page_size: int, page_token: str | None
) -> tuple[list[WebhookRecord], str]:
    """Newest first, keyset-paginated on (create_time, id) like sessions."""
    where = [_W.owner_id == owner_id]
    if page_token:
        create_time, webhook_id = decode_cursor(page_token)
        where.append(
            or_(
                _W.create_time < create_time,
                and_(_W.create_time == create_time, _W.id <= webhook_id),
            )
        )
    rows = (
        await conn.execute(
            select(tables.webhooks)
            .where(*where)
            .order_by(_W.create_time.desc(), _W.id.desc())
            .limit(page_size + 1)
        )
    ).all()
    page = [WebhookRecord.from_row(r) for r in rows[:page_size]]
    token = ""
    if len(rows) > page_size:
        token = encode_cursor(rows[page_size].create_time, rows[page_size].id)
    return page, token


async def delete_webhook(conn: AsyncConnection, *, owner_id: int, webhook_id: str) -> None:
    """The webhook, its undelivered events and its attempts."""
    await get(conn, owner_id=owner_id, webhook_id=webhook_id)
    # Explicit child deletes: SQLite only cascades with foreign_keys=ON, which other tools
    # opening the file may not set.
    for table in (tables.webhook_attempts, tables.webhook_events):
        await conn.execute(delete(table).where(table.c.webhook_id == webhook_id))
    await conn.execute(delete(tables.webhooks).where(_W.id == webhook_id))


def _attempt_cursor(token: str) -> int:
    if not (token.isascii() and token.isdigit()) or len(token) > 19:
        raise cursors.bad_token(token)
    return int(token)


async def list_deliveries(
    conn: AsyncConnection,
    *,
    owner_id: int,
    webhook_id: str,
    page_size: int,
    page_token: str | None,
) -> tuple[list[WebhookDelivery], str]:
    """The webhook's delivery attempts, newest first; the token is the next attempt's id."""
    await get(conn, owner_id=owner_id, webhook_id=webhook_id)
    where = [_A.webhook_id == webhook_id]
    if page_token:
        where.append(_A.id <= _attempt_cursor(page_token))
    rows = (
        await conn.execute(
            select(tables.webhook_attempts)
            .where(*where)
            .order_by(_A.id.desc())
            .limit(page_size + 1)
        )
    ).all()
    page = [
        WebhookDelivery(
            webhook_id=r.message_id,
            event_type=r.event_type,
            attempt=r.attempt,
            status=r.status or 0,
            error=r.error,
            time=format_timestamp(r.time),
        )
        for r in rows[:page_size]
    ]
    token = str(rows[page_size].id) if len(rows) > page_size else ""
    return page, token
