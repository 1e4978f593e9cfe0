"""Sessions: create with validation, read, list (newest first), archive, delete."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from openjules._errors import FieldViolation, InvalidArgument, NotFound
from openjules._types import (
    AutomationMode,
    CreateSessionRequest,
    GitHubRepoContext,
    Session,
    SessionOutput,
    SourceContext,
    State,
)
from openjules.store import jobs, sources, tables
from openjules.store.clock import format_timestamp, new_session_id, now_us
from openjules.store.query import Condition, Filter, Op, filter_clause

TITLE_MAX_CHARS = 80
SESSION_ID = re.compile(r"^[0-9]{1,20}$")
_S = tables.sessions.c


def derive_title(prompt: str) -> str:
    """The prompt's first non-empty line, cut at a word boundary (Google generates one)."""
    first = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", first)
    if len(first) <= TITLE_MAX_CHARS:
        return first
    cut = first[: TITLE_MAX_CHARS - 1]
    if " " in cut[TITLE_MAX_CHARS // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:") + "…"


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.match(session_id):
        raise NotFound()
    return session_id


def to_wire(row: Any, *, public_base_url: str) -> Session:
    source_context = None
    if row.source_name:
        source_context = SourceContext(
            source=row.source_name,
            github_repo_context=GitHubRepoContext(starting_branch=row.starting_branch or ""),
            working_branch=row.working_branch or "",
        )
    return Session(
        name=f"sessions/{row.id}",
        id=row.id,
        prompt=row.prompt,
        source_context=source_context,
        title=row.title,
        create_time=format_timestamp(row.create_time),
        update_time=format_timestamp(row.update_time),
        state=State(row.state),
        url=f"{public_base_url}/session/{row.id}",
        outputs=[SessionOutput.model_validate(o) for o in json.loads(row.outputs)],
        archived=bool(row.archived),
    )


async def _resolve_source(
    conn: AsyncConnection, request: CreateSessionRequest
) -> tuple[str | None, str | None]:
    context = request.source_context
    if context is None:
        return None, None  # a repoless session
    field = "session.source_context.source"
    if not context.source:
        raise InvalidArgument(
            "sourceContext.source is required when sourceContext is given.",
            field_violations=[FieldViolation(field, "A source name is required.")],
        )
    try:
        record = await sources.get(conn, name=context.source)
    except NotFound:
        message = (
            f"Source {context.source!r} was not found. List sources with GET /v1alpha/sources."
        )
        raise InvalidArgument(message, field_violations=[FieldViolation(field, message)]) from None
    repo_context = context.github_repo_context
    if repo_context is None:
        return record.name, record.default_branch
    branch = repo_context.starting_branch
    branch_field = "session.source_context.github_repo_context.starting_branch"
    if not branch:
        raise InvalidArgument(
            "githubRepoContext.startingBranch is required.",
            field_violations=[FieldViolation(branch_field, "A starting branch is required.")],
        )
    if branch not in record.branches:
        message = (
            f"Branch {branch!r} does not exist in {record.name}; "
            f"branches are: {', '.join(record.branches) or '(none)'}."
        )
        raise InvalidArgument(message, field_violations=[FieldViolation(branch_field, message)])
    return record.name, branch


async def create(
    conn: AsyncConnection,
    *,
    owner_id: int,
    request: CreateSessionRequest,
    public_base_url: str,
) -> Session:
    prompt = request.prompt or ""
    if not prompt.strip():
        raise InvalidArgument(
            "The prompt is required.",
            field_violations=[FieldViolation("session.prompt", "The prompt must not be empty.")],
        )
    source_name, branch = await _resolve_source(conn, request)
    now = now_us()
    session_id = new_session_id()
    row = {
        "id": session_id,
        "owner_id": owner_id,
        "state": State.QUEUED.value,
        "prompt": prompt,
        "title": (request.title or "").strip() or derive_title(prompt),
        "source_name": source_name,
        "starting_branch": branch,
        "require_plan_approval": bool(request.require_plan_approval),
        "automation_mode": (
            request.automation_mode or AutomationMode.AUTOMATION_MODE_UNSPECIFIED
        ).value,
        "archived": False,
        "outputs": "[]",
        "create_time": now,
        "update_time": now,
        "last_activity_time": 0,
        "working_branch": None,
    }
    await conn.execute(tables.sessions.insert().values(**row))
    await jobs.enqueue(conn, session_id=session_id)
    return to_wire(_Row(row), public_base_url=public_base_url)


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


async def get_row(conn: AsyncConnection, *, owner_id: int, session_id: str) -> Any:
    row = (
        await conn.execute(
            select(tables.sessions).where(
                _S.id == check_session_id(session_id), _S.owner_id == owner_id
            )
        )
    ).first()
    if row is None:
        raise NotFound()
    return row


async def get(
    conn: AsyncConnection, *, owner_id: int, session_id: str, public_base_url: str
) -> Session:
    row = await get_row(conn, owner_id=owner_id, session_id=session_id)
    return to_wire(row, public_base_url=public_base_url)


async def ensure_owned(conn: AsyncConnection, *, owner_id: int, session_id: str) -> None:
    found = (
        await conn.execute(
            select(_S.id).where(_S.id == check_session_id(session_id), _S.owner_id == owner_id)
        )
    ).first()
    if found is None:
        raise NotFound()


def _bool_condition(cond: Condition) -> ColumnElement[bool]:
    value = cond.value == "true"
    return _S.archived == value if cond.op is Op.EQ else _S.archived != value


def _state_condition(cond: Condition) -> ColumnElement[bool]:
    return _S.state == cond.value if cond.op is Op.EQ else _S.state != cond.value


SESSION_FILTER_COLUMNS = {"archived": _bool_condition, "state": _state_condition}


def encode_cursor(create_time: int, session_id: str) -> str:
    return base64.urlsafe_b64encode(f"s1:{create_time}:{session_id}".encode()).decode()


def decode_cursor(token: str) -> tuple[int, str]:
    try:
        kind, create_time, session_id = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if kind != "s1" or not SESSION_ID.match(session_id):
            raise ValueError(token)
        if not 0 <= int(create_time) < 2**63:  # beyond the BIGINT column
            raise ValueError(token)
        return int(create_time), session_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            f"Invalid page token {token!r}: pass the nextPageToken of a previous response."
        ) from None


async def list_page(
    conn: AsyncConnection,
    *,
    owner_id: int,
    flt: Filter,
    page_size: int,
    page_token: str | None,
    public_base_url: str,
) -> tuple[list[Session], str]:
    """Newest first, keyset-paginated on (create_time, id)."""
    where = [_S.owner_id == owner_id, filter_clause(flt, SESSION_FILTER_COLUMNS)]
    if not flt.mentions("archived"):
        where.append(_S.archived.is_(False))
    if page_token:
        create_time, session_id = decode_cursor(page_token)
        where.append(
            or_(
                _S.create_time < create_time,
                and_(_S.create_time == create_time, _S.id <= session_id),
            )
        )
    rows = (
        await conn.execute(
            select(tables.sessions)
            .where(and_(*where))
            .order_by(_S.create_time.desc(), _S.id.desc())
            .limit(page_size + 1)
        )
    ).all()
    page = [to_wire(r, public_base_url=public_base_url) for r in rows[:page_size]]
    token = ""
    if len(rows) > page_size:
        nxt = rows[page_size]
        token = encode_cursor(nxt.create_time, nxt.id)
    return page, token


async def set_archived(
    conn: AsyncConnection,
    *,
    owner_id: int,
    session_id: str,
    archived: bool,
    public_base_url: str,
) -> Session:
    result = await conn.execute(
        update(tables.sessions)
        .where(_S.id == check_session_id(session_id), _S.owner_id == owner_id)
        .values(archived=archived, update_time=now_us())
    )
    if result.rowcount == 0:
        raise NotFound()
    return await get(
        conn, owner_id=owner_id, session_id=session_id, public_base_url=public_base_url
    )


async def delete_session(conn: AsyncConnection, *, owner_id: int, session_id: str) -> None:
    await ensure_owned(conn, owner_id=owner_id, session_id=session_id)
    # Explicit child deletes: SQLite only cascades with foreign_keys=ON, which other tools
    # opening the file may not set.
    for table in (
        tables.activities,
        tables.plans,
        tables.jobs,
        tables.transcripts,
        tables.checkpoints,
    ):
        await conn.execute(delete(table).where(table.c.session_id == session_id))
    await conn.execute(delete(tables.sessions).where(_S.id == session_id))
