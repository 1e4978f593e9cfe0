"""Sessions: create with validation, read, list (newest first), archive, delete.

Functions return ``SessionRecord``s: what is stored. How a session looks on the wire
(its ``url`` included) is the API's business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, Select, Table, Update, and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from openjules._errors import FieldViolation, InvalidArgument, NotFound
from openjules._types import AutomationMode, CreateSessionRequest, SessionOutput, State
from openjules.store import (
    cursors,
    jobs,
    session_wire,
    sources,
    tables,
    webhook_outbox,
)
from openjules.store.clock import new_session_id, now_us
from openjules.store.direct import DirectReads
from openjules.store.query import Condition, Filter, Op, filter_clause
from openjules.store.writer import Build, ConnectionWriter, Writer

TITLE_MAX_CHARS = 80
SESSION_ID = re.compile(r"^[0-9]{1,20}$")
_S = tables.sessions.c
# Built once: a statement built per call costs SQLAlchemy a cache key of every value.
_INSERT = tables.sessions.insert()


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


@dataclass(frozen=True)
class SessionRecord:
    id: str
    owner_id: int
    state: State
    prompt: str
    title: str
    source_name: str | None  # None: a repoless session
    starting_branch: str | None
    working_branch: str | None  # where its changes were pushed, once they were
    require_plan_approval: bool
    automation_mode: AutomationMode
    archived: bool
    outputs: list[SessionOutput]
    create_time: int
    update_time: int

    @property
    def auto_pr(self) -> bool:
        return self.automation_mode is AutomationMode.AUTO_CREATE_PR

    @classmethod
    def from_row(cls, row: Row[Any] | Mapping[str, Any]) -> SessionRecord:
        values = row._mapping if isinstance(row, Row) else row
        return cls(
            id=values["id"],
            owner_id=values["owner_id"],
            state=State(values["state"]),
            prompt=values["prompt"],
            title=values["title"],
            source_name=values["source_name"],
            starting_branch=values["starting_branch"],
            working_branch=values["working_branch"],
            require_plan_approval=bool(values["require_plan_approval"]),
            automation_mode=AutomationMode(values["automation_mode"]),
            archived=bool(values["archived"]),
            outputs=[SessionOutput.model_validate(o) for o in json.loads(values["outputs"])],
            create_time=values["create_time"],
            update_time=values["update_time"],
        )


def _source_statement() -> Select[Any]:
    return select(tables.sources).where(tables.sources.c.name == bindparam("name"))


_SOURCE_COLUMNS = tuple(c.key for c in tables.sources.c)


async def _source(writer: Writer, *, name: str) -> sources.SourceRecord:
    """``sources.get``, in the create's transaction on ``writer`` (the row turned into a
    record by ``sources``' own mapping, which reads columns as attributes)."""
    found = await writer.rows("sources.get", _source_statement, {"name": name})
    if not found:
        raise NotFound()
    return sources._record(SimpleNamespace(**dict(zip(_SOURCE_COLUMNS, found[0], strict=True))))


async def _resolve_source(
    writer: Writer, request: CreateSessionRequest
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
        record = await _source(writer, name=context.source)
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
) -> SessionRecord:
    """``create_on`` in SQLAlchemy's transaction on ``conn``."""
    return await create_on(ConnectionWriter(conn), owner_id=owner_id, request=request)


async def create_on(
    writer: Writer,
    *,
    owner_id: int,
    request: CreateSessionRequest,
) -> SessionRecord:
    """A new QUEUED session with its job, its change announced and its session.created
    webhook events, in the transaction on ``writer``."""
    prompt = request.prompt or ""
    if not prompt.strip():
        raise InvalidArgument(
            "The prompt is required.",
            field_violations=[FieldViolation("session.prompt", "The prompt must not be empty.")],
        )
    source_name, branch = await _resolve_source(writer, request)
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
    await writer.run("sessions.insert", lambda: _INSERT, row)
    await jobs.enqueue_new(writer, session_id=session_id)
    record = SessionRecord.from_row(row)
    await writer.announce(owner_id=owner_id, session_id=session_id)
    await webhook_outbox.record_created(writer, session=record)
    return record


# The columns of ``select(tables.sessions)``, in order.
_SESSION_COLUMNS = tuple(c.key for c in tables.sessions.c)


def _record_of(row: tuple[Any, ...]) -> SessionRecord:
    """The record of a ``select(tables.sessions)`` row a ``Writer`` returned."""
    return SessionRecord.from_row(dict(zip(_SESSION_COLUMNS, row, strict=True)))


def _get_statement() -> Select[Any]:
    return select(tables.sessions).where(
        _S.id == bindparam("session_id"), _S.owner_id == bindparam("owner_id")
    )


def _owned_statement() -> Select[Any]:
    return select(_S.id).where(
        _S.id == bindparam("session_id"), _S.owner_id == bindparam("owner_id")
    )


async def get(conn: AsyncConnection, *, owner_id: int, session_id: str) -> SessionRecord:
    return await get_on(ConnectionWriter(conn), owner_id=owner_id, session_id=session_id)


async def get_on(writer: Writer, *, owner_id: int, session_id: str) -> SessionRecord:
    """``get`` in the transaction on ``writer``."""
    params = {"session_id": check_session_id(session_id), "owner_id": owner_id}
    found = await writer.rows("sessions.get", _get_statement, params)
    if not found:
        raise NotFound()
    return _record_of(found[0])


async def read(reads: DirectReads, *, owner_id: int, session_id: str) -> SessionRecord:
    """``get`` on the API's hot path (``store.direct``)."""
    params = {"session_id": check_session_id(session_id), "owner_id": owner_id}
    row = await reads.first("sessions.get", _get_statement, params)
    if row is None:
        raise NotFound()
    return SessionRecord.from_row(row)


async def find(conn: AsyncConnection, *, session_id: str) -> SessionRecord | None:
    """Any owner's session (for the engine), or None when it does not exist."""
    return await find_on(ConnectionWriter(conn), session_id=session_id)


def _find_statement() -> Select[Any]:
    return select(tables.sessions).where(_S.id == bindparam("session_id"))


async def find_on(writer: Writer, *, session_id: str) -> SessionRecord | None:
    """``find`` in the transaction on ``writer``."""
    found = await writer.rows("sessions.find", _find_statement, {"session_id": session_id})
    if not found:
        return None
    return _record_of(found[0])


async def ensure_owned(conn: AsyncConnection, *, owner_id: int, session_id: str) -> None:
    await ensure_owned_on(ConnectionWriter(conn), owner_id=owner_id, session_id=session_id)


async def ensure_owned_on(writer: Writer, *, owner_id: int, session_id: str) -> None:
    """NotFound unless ``owner_id`` owns the session (in the transaction on ``writer``)."""
    params = {"session_id": check_session_id(session_id), "owner_id": owner_id}
    if not await writer.rows("sessions.owned", _owned_statement, params):
        raise NotFound()


def _bool_condition(cond: Condition) -> ColumnElement[bool]:
    value = cond.value == "true"
    return _S.archived == value if cond.op is Op.EQ else _S.archived != value


def _state_condition(cond: Condition) -> ColumnElement[bool]:
    return _S.state == cond.value if cond.op is Op.EQ else _S.state != cond.value


SESSION_FILTER_COLUMNS = {"archived": _bool_condition, "state": _state_condition}


def encode_cursor(create_time: int, session_id: str) -> str:
    return cursors.encode("s1", create_time, session_id)


def decode_cursor(token: str) -> tuple[int, str]:
    return cursors.decode(token, kind="s1", item_id=SESSION_ID)


def _list_statement(
    flt: Filter,
    *,
    after: bool,
    title_contains: str,
    columns: tuple[ColumnElement[Any], ...] = tuple(tables.sessions.c),
) -> Select[Any]:
    """Newest first from the cursor (``after``: bindparams ``after_time``, ``after_id``),
    ``limit`` rows, of ``owner_id``'s sessions."""
    where = [_S.owner_id == bindparam("owner_id"), filter_clause(flt, SESSION_FILTER_COLUMNS)]
    if not flt.mentions("archived"):
        where.append(_S.archived.is_(False))
    if title_contains:
        escaped = re.sub(r"([\\%_])", r"\\\1", title_contains)
        where.append(_S.title.ilike(f"%{escaped}%", escape="\\"))
    if after:
        where.append(
            or_(
                _S.create_time < bindparam("after_time"),
                and_(_S.create_time == bindparam("after_time"), _S.id <= bindparam("after_id")),
            )
        )
    return (
        select(*columns)
        .where(and_(*where))
        .order_by(_S.create_time.desc(), _S.id.desc())
        .limit(bindparam("limit"))
    )


def _list_params(*, owner_id: int, page_size: int, page_token: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"owner_id": owner_id, "limit": page_size + 1}
    if page_token:
        params["after_time"], params["after_id"] = decode_cursor(page_token)
    return params


def _paged(rows: list[Any], page_size: int) -> tuple[list[SessionRecord], str]:
    page = [SessionRecord.from_row(r) for r in rows[:page_size]]
    token = ""
    if len(rows) > page_size:
        nxt = rows[page_size]
        token = encode_cursor(nxt["create_time"], nxt["id"])
    return page, token


async def list_page(
    conn: AsyncConnection,
    *,
    owner_id: int,
    flt: Filter,
    page_size: int,
    page_token: str | None,
    title_contains: str = "",
) -> tuple[list[SessionRecord], str]:
    """Newest first, keyset-paginated on (create_time, id); ``title_contains``: only
    sessions whose title contains that text, ignoring case (the web app's search)."""
    params = _list_params(owner_id=owner_id, page_size=page_size, page_token=page_token)
    statement = _list_statement(flt, after=bool(page_token), title_contains=title_contains)
    rows = (await conn.execute(statement, params)).mappings().all()
    return _paged(list(rows), page_size)


async def list_rows(
    reads: DirectReads,
    *,
    owner_id: int,
    flt: Filter,
    page_size: int,
    page_token: str | None,
) -> tuple[list[tuple[Any, ...]], str]:
    """``list_page`` on the API's hot path (``store.direct``), as rows of
    ``session_wire.WIRE_COLUMNS``: the API renders them straight to JSON."""
    params = _list_params(owner_id=owner_id, page_size=page_size, page_token=page_token)
    after = bool(page_token)
    rows = await reads.tuples(
        ("sessions.list", flt, after),
        lambda: _list_statement(
            flt, after=after, title_contains="", columns=session_wire.WIRE_COLUMNS
        ),
        params,
    )
    token = row_cursor(rows[page_size]) if len(rows) > page_size else ""
    return rows[:page_size], token


def row_cursor(row: tuple[Any, ...]) -> str:
    """The page token of a page that starts at ``row`` (of ``session_wire.WIRE_COLUMNS``)."""
    return encode_cursor(row[session_wire.WIRE_CREATE_TIME], row[session_wire.WIRE_ID])


async def set_archived(
    writer: Writer,
    *,
    owner_id: int,
    session_id: str,
    archived: bool,
) -> SessionRecord:
    params = {
        "session_id": check_session_id(session_id),
        "owner": owner_id,
        "new_archived": archived,
        "now": now_us(),
    }
    await writer.run("sessions.set_archived", _set_archived_statement, params)
    record = await get_on(writer, owner_id=owner_id, session_id=session_id)  # or NotFound
    await writer.announce(owner_id=owner_id, session_id=session_id)
    return record


def _set_archived_statement() -> Update:
    # No parameter named after a column: SQLAlchemy keeps those for an UPDATE's SET.
    return (
        update(tables.sessions)
        .where(_S.id == bindparam("session_id"), _S.owner_id == bindparam("owner"))
        .values(archived=bindparam("new_archived"), update_time=bindparam("now"))
    )


# Every table whose rows belong to a session, read off the schema (children first).
SESSION_CHILDREN = tuple(
    table
    for table in reversed(tables.metadata.sorted_tables)
    if any(fk.column.table is tables.sessions for fk in table.foreign_keys)
)


async def delete_session(writer: Writer, *, owner_id: int, session_id: str) -> None:
    await ensure_owned_on(writer, owner_id=owner_id, session_id=session_id)
    # Explicit child deletes: SQLite only cascades with foreign_keys=ON, which other tools
    # opening the file may not set. A new table that references sessions is deleted with
    # them (SESSION_CHILDREN).
    params = {"session_id": session_id}
    for table in SESSION_CHILDREN:
        await writer.run(("sessions.delete_children", table.name), _delete_of(table), params)
    await writer.run("sessions.delete", _delete_of(tables.sessions, column="id"), params)
    await writer.announce(owner_id=owner_id, session_id=session_id)


def _delete_of(table: Table, *, column: str = "session_id") -> Build:
    """A builder of ``DELETE FROM table WHERE column = :session_id``."""
    return lambda: delete(table).where(table.c[column] == bindparam("session_id"))
