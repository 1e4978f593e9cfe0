"""The SDK's automatic paging, ``Client`` and ``AsyncClient``, on both backends (a server
without workers: nothing moves the sessions on): 120 sessions of one user come back
exactly once each, newest first, whatever the page size; a session's 105 activities come
back oldest first across pages of the server's default size and of its maximum."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._types import CreateSessionRequest
from openjules.store import session_actions, sessions, users
from openjules.store.oneshot import run_write
from openjules.store.writer import ConnectionWriter
from openjules.testing import LiveServer, provision_user
from tests.client.conftest import OpenSDK

SESSIONS = 120
# More than the largest page the server gives (100).
MESSAGES = 105


@dataclass(frozen=True)
class Owner:
    """The user whose sessions are listed, and what the store made for them."""

    key: str
    # Session ids in the order they were created.
    created: list[str]
    # The session that was sent MESSAGES messages.
    chatty: str


@pytest.fixture(scope="module")
def owner(server: LiveServer) -> Owner:
    """A user with 120 repoless sessions, the first of them sent 105 messages (105
    userMessaged activities), written straight to the store: what is tested is reading
    them, and 225 requests would take seconds."""
    name = f"pager-{secrets.token_hex(4)}"
    key = provision_user(server.settings, name=name)

    async def action(conn: AsyncConnection) -> list[str]:
        user = await users.get_or_create_user(conn, name=name)
        created = []
        for n in range(SESSIONS):
            request = CreateSessionRequest(prompt=f"Task {n}")
            record = await sessions.create(conn, owner_id=user.id, request=request)
            created.append(record.id)
        for n in range(MESSAGES):
            await session_actions.send_message(f"Message {n}").apply(
                ConnectionWriter(conn), owner_id=user.id, session_id=created[0]
            )
        return created

    created = run_write(server.settings.resolved_database_url(), action)
    return Owner(key=key, created=created, chatty=created[0])


@pytest.mark.parametrize("page_size", [None, 7])
def test_list_sessions_yields_each_of_120_sessions_once_newest_first(
    server: LiveServer,
    owner: Owner,
    open_sdk: OpenSDK,
    page_size: int | None,
) -> None:
    jules = open_sdk(server.url, owner.key)
    listed = list(jules.list_sessions(page_size=page_size))
    assert [s.id for s in listed] == list(reversed(owner.created))
    assert [s.prompt for s in listed[:2]] == [f"Task {SESSIONS - 1}", f"Task {SESSIONS - 2}"]


def test_list_sessions_pages_are_the_size_asked_for_and_the_last_has_no_token(
    server: LiveServer, owner: Owner, open_sdk: OpenSDK
) -> None:
    jules = open_sdk(server.url, owner.key)
    sizes: list[int] = []
    token: str | None = None
    while True:
        page = jules.list_sessions_page(page_size=7, page_token=token)
        sizes.append(len(page.sessions))
        token = page.next_page_token
        if not token:
            break
    # 120 = 17 * 7 + 1
    assert sizes == [7] * 17 + [1]


def test_list_sessions_pages_through_a_filter(
    server: LiveServer, owner: Owner, open_sdk: OpenSDK
) -> None:
    jules = open_sdk(server.url, owner.key)
    queued = jules.list_sessions(filter="state = QUEUED", page_size=9)
    assert [s.id for s in queued] == list(reversed(owner.created))
    assert list(jules.list_sessions(filter="state = COMPLETED", page_size=9)) == []


@pytest.mark.parametrize("page_size", [None, 100])
def test_list_activities_yields_105_activities_once_oldest_first(
    server: LiveServer, owner: Owner, open_sdk: OpenSDK, page_size: int | None
) -> None:
    jules = open_sdk(server.url, owner.key)
    first = jules.list_activities_page(owner.chatty, page_size=page_size)
    assert first.next_page_token, "105 activities take more than one page"
    listed = list(jules.list_activities(owner.chatty, page_size=page_size))
    assert [a.user_messaged.user_message for a in listed if a.user_messaged] == [
        f"Message {n}" for n in range(MESSAGES)
    ]
    assert len({a.id for a in listed}) == MESSAGES
    assert [a.id for a in listed[: len(first.activities)]] == [a.id for a in first.activities]
