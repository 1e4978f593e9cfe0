"""Users and their API keys. Keys are random, shown once, and stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
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

    @property
    def live(self) -> bool:
        return self.revoke_time is None


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


async def list_keys(conn: AsyncConnection, *, user_name: str | None = None) -> list[ApiKeyInfo]:
    query = (
        select(
            tables.api_keys.c.id,
            tables.users.c.name,
            tables.api_keys.c.create_time,
            tables.api_keys.c.revoke_time,
        )
        .join(tables.users, tables.users.c.id == tables.api_keys.c.user_id)
        .order_by(tables.users.c.name, tables.api_keys.c.create_time)
    )
    if user_name is not None:
        query = query.where(tables.users.c.name == user_name)
    rows = (await conn.execute(query)).all()
    return [
        ApiKeyInfo(id=r.id, user_name=r.name, create_time=r.create_time, revoke_time=r.revoke_time)
        for r in rows
    ]


async def revoke_key(conn: AsyncConnection, *, key_id: str) -> None:
    result = await conn.execute(
        update(tables.api_keys)
        .where(tables.api_keys.c.id == key_id, tables.api_keys.c.revoke_time.is_(None))
        .values(revoke_time=now_us())
    )
    if result.rowcount == 0:
        raise NotFound(f"No live API key with id {key_id!r}.")


async def authenticate(conn: AsyncConnection, *, secret: str) -> User | None:
    row = (
        await conn.execute(
            select(tables.users.c.id, tables.users.c.name)
            .join(tables.api_keys, tables.api_keys.c.user_id == tables.users.c.id)
            .where(
                tables.api_keys.c.key_hash == hash_key(secret),
                tables.api_keys.c.revoke_time.is_(None),
            )
        )
    ).first()
    return None if row is None else User(id=row.id, name=row.name)
