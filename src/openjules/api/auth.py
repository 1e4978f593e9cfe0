"""API-key authentication: ``X-Goog-Api-Key`` (any case) or the ``?key=`` parameter; each
authenticated request counts against its key's rate limit (``api.rate_limit``)."""

from __future__ import annotations

from fastapi import Request

from openjules._errors import Unauthenticated
from openjules.api.state import AppState
from openjules.store import users
from openjules.store.clock import now_us
from openjules.store.users import User

MISSING = (
    "Missing API key. Send it in the X-Goog-Api-Key header "
    "(create one with `openjules keys create --user NAME`)."
)
INVALID = "API key not valid. Please pass a valid API key."


async def current_user(request: Request) -> User:
    secret = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    return await authenticate(AppState.of(request), secret)


async def authenticate(state: AppState, secret: str | None) -> User:
    """The user of API key ``secret`` (counted against its rate limit), or 401."""
    if not secret:
        raise Unauthenticated(MISSING)
    user = state.key_cache.get(secret)
    if user is None:
        async with state.db.read() as conn:
            owner = await users.authenticate_key(conn, secret=secret)
        if owner is None:
            raise Unauthenticated(INVALID)
        # Checked on a cache miss only: a key in use costs a write at most once a minute.
        now = now_us()
        if users.use_is_news(owner, now=now):
            async with state.db.write() as conn:
                await users.mark_used(conn, key_id=owner.key_id, now=now)
        user = owner.user
        state.key_cache.put(secret, user)
    # Counted once authenticated: an unknown key is refused above and costs no allowance.
    state.rate_limiter.check(secret)
    return user
