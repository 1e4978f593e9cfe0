"""Sources: instance-wide git repositories, exposed as ``sources/github/{owner}/{repo}``."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, replace

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from openjules._errors import InvalidArgument, NotFound
from openjules._types import GitHubBranch, GitHubRepo, Source
from openjules.store import tables
from openjules.store.clock import now_us
from openjules.store.query import Condition, Filter, Op, filter_clause
from openjules.store.upsert import upsert_on
from openjules.store.writer import ConnectionWriter

# GitHub's own rules are narrower; these keep names safe in URLs, paths and branch names.
NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SOURCE_ID = re.compile(r"^github/([^/]+)/([^/]+)$")


class Forge(enum.Enum):
    """Where a source's repository lives, which decides how its changes are delivered."""

    GITHUB = "github"  # a repository of the configured GitHub: token, pull requests
    GIT = "git"  # any other URL or local path: branches are pushed, nothing more


@dataclass(frozen=True)
class SourceRecord:
    owner: str
    repo: str
    url: str
    is_private: bool
    default_branch: str
    branches: list[str]
    setup_script: str | None = None
    network_allowed: bool = False
    forge: Forge = Forge.GIT

    def keeping_settings_of(self, old: SourceRecord) -> SourceRecord:
        """This record as re-read from its repository, with how ``old``'s sessions run
        (setup script, network), which only an operator changes."""
        return replace(self, setup_script=old.setup_script, network_allowed=old.network_allowed)

    @property
    def id(self) -> str:
        return f"github/{self.owner}/{self.repo}"

    @property
    def name(self) -> str:
        return f"sources/{self.id}"

    def to_wire(self) -> Source:
        return Source(
            name=self.name,
            id=self.id,
            github_repo=GitHubRepo(
                owner=self.owner,
                repo=self.repo,
                is_private=self.is_private,
                default_branch=GitHubBranch(display_name=self.default_branch),
                branches=[GitHubBranch(display_name=b) for b in self.branches],
            ),
        )


def validate_owner_repo(owner: str, repo: str) -> None:
    for label, part in (("owner", owner), ("repo", repo)):
        if not NAME_PART.match(part) or part in (".", ".."):
            raise InvalidArgument(
                f"Invalid source {label} {part!r}: use letters, digits, '.', '_' or '-'."
            )


def _record(row: object) -> SourceRecord:
    return SourceRecord(
        owner=row.owner,  # type: ignore[attr-defined]
        repo=row.repo,  # type: ignore[attr-defined]
        url=row.url,  # type: ignore[attr-defined]
        is_private=bool(row.is_private),  # type: ignore[attr-defined]
        default_branch=row.default_branch,  # type: ignore[attr-defined]
        branches=json.loads(row.branches),  # type: ignore[attr-defined]
        setup_script=row.setup_script,  # type: ignore[attr-defined]
        network_allowed=bool(row.network_allowed),  # type: ignore[attr-defined]
        forge=Forge(row.forge),  # type: ignore[attr-defined]
    )


async def upsert(conn: AsyncConnection, *, record: SourceRecord) -> SourceRecord:
    validate_owner_repo(record.owner, record.repo)
    now = now_us()
    values = {
        "name": record.name,
        "owner": record.owner,
        "repo": record.repo,
        "url": record.url,
        "is_private": record.is_private,
        "default_branch": record.default_branch,
        "branches": json.dumps(record.branches),
        "setup_script": record.setup_script,
        "network_allowed": record.network_allowed,
        "forge": record.forge.value,
        "create_time": now,
        "update_time": now,
    }
    await upsert_on(
        ConnectionWriter(conn), tables.sources, key=["name"], values=values, keep=("create_time",)
    )
    return record


async def get(conn: AsyncConnection, *, name: str) -> SourceRecord:
    row = (await conn.execute(select(tables.sources).where(tables.sources.c.name == name))).first()
    if row is None:
        raise NotFound()
    return _record(row)


async def all_records(conn: AsyncConnection) -> list[SourceRecord]:
    rows = (await conn.execute(select(tables.sources).order_by(tables.sources.c.name))).all()
    return [_record(r) for r in rows]


def _name_condition(cond: Condition) -> ColumnElement[bool]:
    column = tables.sources.c.name
    return column == cond.value if cond.op is Op.EQ else column != cond.value


SOURCE_FILTER_COLUMNS = {"name": _name_condition}


async def list_page(
    conn: AsyncConnection, *, flt: Filter, page_size: int, start_id: str | None
) -> tuple[list[SourceRecord], str]:
    """By name. The page token is the id of the first source of the next page."""
    where = [filter_clause(flt, SOURCE_FILTER_COLUMNS)]
    if start_id is not None:
        where.append(tables.sources.c.name >= f"sources/{start_id}")
    rows = (
        await conn.execute(
            select(tables.sources)
            .where(and_(*where))
            .order_by(tables.sources.c.name)
            .limit(page_size + 1)
        )
    ).all()
    records = [_record(r) for r in rows[:page_size]]
    token = _record(rows[page_size]).id if len(rows) > page_size else ""
    return records, token


async def delete(conn: AsyncConnection, *, name: str) -> None:
    await conn.execute(tables.sources.delete().where(tables.sources.c.name == name))
