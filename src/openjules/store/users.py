"""Users and their API keys. Keys are random, shown once, and stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import FailedPrecondition, NotFound
from openjules.store import tables
from openjules.store.clock import now_us

KEY_PREFIX = "ojk"


@dataclass(frozen=True)
class User:
    id: int
    name: str


@dataclass(frozen=True)
class ApiKeyInfo:
    id: str
    user_name: str
    create_time: int
    revoke_time: int | None
    last_used_time: int | None = None

    @property
    def live(self) -> bool:
        return self.revoke_time is None

    @property
    def prefix(self) -> str:
        """How a person recognises the key: the start of its secret (``ojk_<id>_``)."""
        return f"{KEY_PREFIX}_{self.id}_"


@dataclass(frozen=True)
class KeyOwner:
    """What a valid key opens: its user, and the key itself."""

    user: User
    key_id: str
    last_used_time: int | None


@dataclass(frozen=True)
class NewApiKey:
    id: str
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def get_or_create_user(conn: AsyncConnection, *, name: str) -> User:
    row = (await conn.execute(select(tables.users.c.id).where(tables.users.c.name == name))).first()
    if row is not None:
        return User(id=row.id, name=name)
    result = await conn.execute(
        insert(tables.users).values(name=name, create_time=now_us()).returning(tables.users.c.id)
    )
    return User(id=result.scalar_one(), name=name)


# The PostgreSQL advisory lock of the first start (any 64-bit number no other lock uses).
FIRST_START_LOCK = 0x6F70656E6A0002


async def create_first_user(
    conn: AsyncConnection, *, name: str, max_live_keys: int
) -> NewApiKey | None:
    """On a database without users, the user ``name`` and an API key for them; None if
    there are users. API processes starting at once on an empty PostgreSQL database take
    turns (an advisory lock held until the transaction ends), so only the first creates
    the user and the others find it, instead of failing on its unique name."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_START_LOCK})
    if await count_users(conn):
        return None
    user = await get_or_create_user(conn, name=name)
    return await create_key(conn, user=user, max_live_keys=max_live_keys)


async def count_users(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(tables.users))).scalar_one())


async def create_key(conn: AsyncConnection, *, user: User, max_live_keys: int) -> NewApiKey:
    live = (
        await conn.execute(
            select(func.count())
            .select_from(tables.api_keys)
            .where(tables.api_keys.c.user_id == user.id, tables.api_keys.c.revoke_time.is_(None))
        )
    ).scalar_one()
    if live >= max_live_keys:
        raise FailedPrecondition(
            f"User {user.name!r} already has {live} live API keys, the limit is "
            f"{max_live_keys}. Revoke one first with `openjules keys revoke KEY_ID` "
            "(see `openjules keys list`)."
        )
    key_id = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(30)}"
    await conn.execute(
        insert(tables.api_keys).values(
            id=key_id, user_id=user.id, key_hash=hash_key(secret), create_time=now_us()
        )
    )
    return NewApiKey(id=key_id, secret=secret)


async def list_keys(
    conn: AsyncConnection, *, user_name: str | None = None, user_id: int | None = None
) -> list[ApiKeyInfo]:
    """Keys by user name, then oldest first; only ``user_name``'s or ``user_id``'s if given."""
    query = (
        select(
            tables.api_keys.c.id,
            tables.users.c.name,
            tables.api_keys.c.create_time,
            tables.api_keys.c.revoke_time,
            tables.api_keys.c.last_used_time,
        )
        .join(tables.users, tables.users.c.id == tables.api_keys.c.user_id)
        .order_by(tables.users.c.name, tables.api_keys.c.create_time)
    )
    if user_name is not None:
        query = query.where(tables.users.c.name == user_name)
    if user_id is not None:
        query = query.where(tables.users.c.id == user_id)
    rows = (await conn.execute(query)).all()
    return [
        ApiKeyInfo(
            id=r.id,
            user_name=r.name,
            create_time=r.create_time,
            revoke_time=r.revoke_time,
            last_used_time=r.last_used_time,
        )
        for r in rows
    ]


async def revoke_key(conn: AsyncConnection, *, key_id: str, user_id: int | None = None) -> None:
    """Revoke a live key; with ``user_id``, only one of that user's (another's is NotFound)."""
    where = [tables.api_keys.c.id == key_id, tables.api_keys.c.revoke_time.is_(None)]
    if user_id is not None:
        where.append(tables.api_keys.c.user_id == user_id)
    result = await conn.execute(update(tables.api_keys).where(*where).values(revoke_time=now_us()))
    if result.rowcount == 0:
        raise NotFound(f"No live API key with id {key_id!r}.")


async def authenticate_key(conn: AsyncConnection, *, secret: str) -> KeyOwner | None:
    row = (
        await conn.execute(
            select(
                tables.users.c.id,
                tables.users.c.name,
                tables.api_keys.c.id.label("key_id"),
                tables.api_keys.c.last_used_time,
            )
            .join(tables.api_keys, tables.api_keys.c.user_id == tables.users.c.id)
            .where(
                tables.api_keys.c.key_hash == hash_key(secret),
                tables.api_keys.c.revoke_time.is_(None),
            )
        )
    ).first()
    if row is None:
        return None
    user = User(id=row.id, name=row.name)
    return KeyOwner(user=user, key_id=row.key_id, last_used_time=row.last_used_time)


async def authenticate(conn: AsyncConnection, *, secret: str) -> User | None:
    owner = await authenticate_key(conn, secret=secret)
    return None if owner is None else owner.user


# "Last used" is kept to the minute: a busy key costs one write a minute, not one a request.
LAST_USED_RESOLUTION_US = 60_000_000


def use_is_news(owner: KeyOwner, *, now: int) -> bool:
    """Whether ``owner``'s key should be marked used now (its mark is older than a minute)."""
    last = owner.last_used_time
    return last is None or now - last >= LAST_USED_RESOLUTION_US


async def mark_used(conn: AsyncConnection, *, key_id: str, now: int) -> None:
    stale = (tables.api_keys.c.last_used_time.is_(None)) | (
        tables.api_keys.c.last_used_time <= now - LAST_USED_RESOLUTION_US
    )
    await conn.execute(
        update(tables.api_keys)
        .where(tables.api_keys.c.id == key_id, stale)
        .values(last_used_time=now)
    )
