"""Sources, API keys and webhooks pages (``/sources``, ``/keys``, ``/webhooks``).

Everything goes through the same store services as the API: the key limit, who may
revoke which key, a webhook's validation and the SSRF guard are theirs, not copied here.
A new key's or webhook's secret is shown once, on the page that answers the post.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from openjules._errors import APIError, FailedPrecondition, InvalidArgument
from openjules._types import CreateWebhookRequest, WebhookEventType
from openjules.api.state import AppState
from openjules.store import sources, users, web_sessions, webhook_outbox, webhooks
from openjules.store.clock import format_timestamp, now_us
from openjules.store.users import ApiKeyInfo, User
from openjules.store.webhooks import WebhookRecord
from openjules.web import auth
from openjules.web.auth import CheckedForm, SignedInUser, form_text
from openjules.web.pages import PageRoute, page, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)
# A user has at most this many webhooks, so one page shows them all.
WEBHOOKS_SHOWN = webhooks.MAX_WEBHOOKS_PER_USER
DELIVERIES_PAGE = 50
EVENT_TYPES = list(WebhookEventType)


# --- sources ---------------------------------------------------------------------------


@router.get("/sources")
async def sources_page(request: Request, _user: SignedInUser) -> Response:
    async with AppState.of(request).db.read() as conn:
        records = await sources.all_records(conn)
    return page(request, "sources.html", {"active": "sources", "sources": records})


# --- API keys --------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    id: str
    prefix: str
    created: str  # RFC 3339, for the `when` and `age` filters
    last_used: str  # "" when never used
    live: bool

    @classmethod
    def of(cls, info: ApiKeyInfo) -> KeyRow:
        last = info.last_used_time
        return cls(
            id=info.id,
            prefix=info.prefix,
            created=format_timestamp(info.create_time),
            last_used=format_timestamp(last) if last is not None else "",
            live=info.live,
        )


async def _keys_page(
    request: Request,
    user: User,
    *,
    new_secret: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    async with AppState.of(request).db.read() as conn:
        infos = await users.list_keys(conn, user_id=user.id)
    return page(
        request,
        "keys.html",
        {
            "active": "keys",
            "keys": [KeyRow.of(info) for info in infos],
            "new_secret": new_secret,
            "error": error,
            "notice": "The key was revoked." if request.query_params.get("revoked") else "",
            "max_keys": AppState.of(request).settings.max_keys_per_user,
        },
        status=status,
    )


@router.get("/keys")
async def keys_page(request: Request, user: SignedInUser) -> Response:
    return await _keys_page(request, user)


@router.post("/keys")
async def create_key(request: Request, user: SignedInUser, _form: CheckedForm) -> Response:
    """The new key's secret, on this answer only (never stored: only its hash is)."""
    state = AppState.of(request)
    try:
        async with state.db.write() as conn:
            made = await users.create_key(
                conn, user=user, max_live_keys=state.settings.max_keys_per_user
            )
    except FailedPrecondition as exc:
        return await _keys_page(request, user, error=exc.message, status=exc.http_code)
    return await _keys_page(request, user, new_secret=made.secret)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    request: Request, user: SignedInUser, key_id: str, _form: CheckedForm
) -> Response:
    """Revoke one of the user's keys (another's is not found). Web sessions hang on the
    key they signed in with: revoking this browser's key signs it out."""
    token = request.cookies.get(auth.SESSION_COOKIE, "")
    async with AppState.of(request).db.write() as conn:
        await users.revoke_key(conn, key_id=key_id, user_id=user.id)
        signed_out = await web_sessions.find(conn, token=token, now=now_us()) is None
        if signed_out:
            await web_sessions.end(conn, token=token)
    if signed_out:
        response = see_other("/sign-in")
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response
    return see_other("/keys?revoked=1")


# --- webhooks --------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookForm:
    """What the create form holds, kept when it is shown again with an error."""

    url: str = ""
    description: str = ""
    event_types: tuple[str, ...] = ()

    @classmethod
    def of(cls, form: FormData) -> WebhookForm:
        chosen = [v for v in form.getlist("event_types") if isinstance(v, str)]
        return cls(
            url=form_text(form, "url"),
            description=form_text(form, "description"),
            event_types=tuple(chosen),
        )

    def request(self) -> CreateWebhookRequest:
        return CreateWebhookRequest(
            url=self.url, description=self.description, event_types=list(self.event_types)
        )


@dataclass(frozen=True)
class WebhookRow:
    record: WebhookRecord

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def url(self) -> str:
        return self.record.url

    @property
    def description(self) -> str:
        return self.record.description

    @property
    def events(self) -> str:
        types = self.record.event_types
        return ", ".join(t.value for t in types) if types else "All events"

    @property
    def created(self) -> str:
        return format_timestamp(self.record.create_time)


async def _webhooks_page(
    request: Request,
    user: User,
    *,
    values: WebhookForm | None = None,
    new_secret: str = "",
    new_id: str = "",
    error: str = "",
    error_fields: frozenset[str] = frozenset(),
    status: int = 200,
) -> Response:
    async with AppState.of(request).db.read() as conn:
        records, _ = await webhooks.list_page(
            conn, owner_id=user.id, page_size=WEBHOOKS_SHOWN, page_token=None
        )
    return page(
        request,
        "webhooks.html",
        {
            "active": "webhooks",
            "webhooks": [WebhookRow(r) for r in records],
            "event_types": EVENT_TYPES,
            "values": values or WebhookForm(),
            "new_secret": new_secret,
            "new_id": new_id,
            "error": error,
            "error_fields": error_fields,
            "notice": "The webhook was deleted." if request.query_params.get("deleted") else "",
        },
        status=status,
    )


@router.get("/webhooks")
async def webhooks_page(request: Request, user: SignedInUser) -> Response:
    return await _webhooks_page(request, user)


def _fields_of(error: APIError) -> frozenset[str]:
    """The form fields an error names (``event_types[2]`` is the event types' field)."""
    return frozenset(v.field.partition("[")[0] for v in error.field_violations)


@router.post("/webhooks")
async def create_webhook(request: Request, user: SignedInUser, form: CheckedForm) -> Response:
    """webhooks.create, as the API does it (store.webhooks.register); the secret shown
    once."""
    state = AppState.of(request)
    values = WebhookForm.of(form)
    try:
        record = await webhooks.register(
            state.db,
            owner_id=user.id,
            request=values.request(),
            allow_private=state.settings.webhooks_allow_private,
        )
    except (InvalidArgument, FailedPrecondition) as exc:
        return await _webhooks_page(
            request,
            user,
            values=values,
            error=exc.message,
            error_fields=_fields_of(exc),
            status=exc.http_code,
        )
    return await _webhooks_page(request, user, new_secret=record.secret, new_id=record.id)


@router.post("/webhooks/{webhook_id}/delete")
async def delete_webhook(
    request: Request, user: SignedInUser, webhook_id: str, _form: CheckedForm
) -> Response:
    async with AppState.of(request).db.write() as conn:
        await webhooks.delete_webhook(conn, owner_id=user.id, webhook_id=webhook_id)
    return see_other("/webhooks?deleted=1")


@router.post("/webhooks/{webhook_id}/test")
async def send_test_event(
    request: Request, user: SignedInUser, webhook_id: str, _form: CheckedForm
) -> Response:
    """Queue a ``webhook.test`` event (as webhooks.test does); its delivery shows below."""
    async with AppState.of(request).db.write() as conn:
        await webhooks.get(conn, owner_id=user.id, webhook_id=webhook_id)
        await webhook_outbox.record_test(conn, webhook_id=webhook_id)
    return see_other(f"/webhooks/{webhook_id}?tested=1")


@router.get("/webhooks/{webhook_id}")
async def webhook_page(request: Request, user: SignedInUser, webhook_id: str) -> Response:
    """The webhook and its recent delivery attempts, newest first."""
    token = request.query_params.get("page") or None
    async with AppState.of(request).db.read() as conn:
        record = await webhooks.get(conn, owner_id=user.id, webhook_id=webhook_id)
        deliveries, next_token = await webhooks.list_deliveries(
            conn,
            owner_id=user.id,
            webhook_id=webhook_id,
            page_size=DELIVERIES_PAGE,
            page_token=token,
        )
    next_link = f"/webhooks/{record.id}?{urlencode({'page': next_token})}" if next_token else ""
    return page(
        request,
        "webhook.html",
        {
            "active": "webhooks",
            "webhook": WebhookRow(record),
            "deliveries": deliveries,
            "next_link": next_link,
            "first_page": token is None,
            "notice": (
                "A test event was queued; its delivery shows here once attempted."
                if request.query_params.get("tested")
                else ""
            ),
        },
    )
