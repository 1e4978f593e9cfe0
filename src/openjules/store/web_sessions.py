"""Signed-in browsers of the web app: opened with an API key, ended by signing out, by
expiry, or by revoking that key.

The browser holds a random token in a cookie; the table keeps only its SHA-256, and each
session's synchronizer token for forms (CSRF).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.store import tables, users
from openjules.store.users import User

_W = tables.web_sessions.c


@dataclass(frozen=True)
class WebSession:
    user: User
    csrf_token: str


@dataclass(frozen=True)
class OpenedWebSession:
    token: str  # for the cookie; never stored
    session: WebSession


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(
    conn: AsyncConnection, *, secret: str, now: int, lifetime_us: int
) -> OpenedWebSession | None:
    """A new session for the owner of API key ``secret``; None if the key is not valid."""
    owner = await users.authenticate_key(conn, secret=secret)
    if owner is None:
        return None
    if users.use_is_news(owner, now=now):
        await users.mark_used(conn, key_id=owner.key_id, now=now)
    # Expired sessions go here rather than in a background task: signing in is rare.
    await conn.execute(delete(tables.web_sessions).where(_W.expire_time <= now))
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    await conn.execute(
        insert(tables.web_sessions).values(
            token_hash=_hash(token),
            user_id=owner.user.id,
            api_key_id=owner.key_id,
            csrf_token=csrf_token,
            create_time=now,
            expire_time=now + lifetime_us,
        )
    )
    return OpenedWebSession(token=token, session=WebSession(user=owner.user, csrf_token=csrf_token))


async def find(conn: AsyncConnection, *, token: str, now: int) -> WebSession | None:
    """The live session of ``token``: not expired, its API key not revoked."""
    row = (
        await conn.execute(
            select(tables.users.c.id, tables.users.c.name, _W.csrf_token)
            .join(tables.users, tables.users.c.id == _W.user_id)
            .join(tables.api_keys, tables.api_keys.c.id == _W.api_key_id)
            .where(
                _W.token_hash == _hash(token),
                _W.expire_time > now,
                tables.api_keys.c.revoke_time.is_(None),
            )
        )
    ).first()
    if row is None:
        return None
    return WebSession(user=User(id=row.id, name=row.name), csrf_token=row.csrf_token)


async def end(conn: AsyncConnection, *, token: str) -> None:
    await conn.execute(delete(tables.web_sessions).where(_W.token_hash == _hash(token)))
