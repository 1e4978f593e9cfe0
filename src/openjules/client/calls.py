"""The API's methods as data: what each sends and how its answer is read.

``Client`` and ``AsyncClient`` differ only in how they move bytes; both run these
``Call``s, so a method's path, body, idempotence and answer are defined once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from openjules._types import (
    Activity,
    AutomationMode,
    ListActivitiesResponse,
    ListSessionsResponse,
    ListSourcesResponse,
    Session,
    Source,
)
from openjules.client.names import (
    SessionRef,
    SourceRef,
    activity_id,
    session_id,
    source_name,
)

T = TypeVar("T")


def _nothing(_body: Any) -> None:
    return None


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    # Relative to the API root (``…/v1alpha``); already percent-encoded.
    path: str
    parse: Callable[[Any], T]
    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    # Safe to send again when the first try may have reached the server (GETs, and
    # verbs whose repeat changes nothing more): retried on 429/503 as well.
    idempotent: bool = True
    # The openjules extension this method is, for a clear error on a plain Jules server.
    extension: str | None = None
    # A 404 from a method that is not ours to begin with means "no such thing"; from an
    # extension's path it may mean "no such method": checked against this.
    summary: str = ""


def _page_params(
    *, page_size: int | None, page_token: str | None, filter: str | None
) -> dict[str, str]:
    params: dict[str, str] = {}
    if page_size is not None:
        params["pageSize"] = str(page_size)
    if page_token:
        params["pageToken"] = page_token
    if filter:
        params["filter"] = filter
    return params


# --- sources --------------------------------------------------------------------------


def list_sources(
    *, page_size: int | None = None, page_token: str | None = None, filter: str | None = None
) -> Call[ListSourcesResponse]:
    return Call(
        "GET",
        "sources",
        ListSourcesResponse.model_validate,
        params=_page_params(page_size=page_size, page_token=page_token, filter=filter),
        summary="sources.list",
    )


def get_source(ref: SourceRef) -> Call[Source]:
    return Call("GET", source_name(ref), Source.model_validate, summary="sources.get")


# --- sessions -------------------------------------------------------------------------


def create_session(
    *,
    prompt: str,
    source: SourceRef | None,
    starting_branch: str | None,
    title: str | None,
    require_plan_approval: bool,
    auto_pr: bool,
) -> Call[Session]:
    body: dict[str, Any] = {"prompt": prompt}
    if source is not None:
        context: dict[str, Any] = {"source": source_name(source)}
        if starting_branch:
            context["githubRepoContext"] = {"startingBranch": starting_branch}
        body["sourceContext"] = context
    if title:
        body["title"] = title
    if require_plan_approval:
        body["requirePlanApproval"] = True
    if auto_pr:
        body["automationMode"] = AutomationMode.AUTO_CREATE_PR.value
    # Not idempotent: a repeat would start a second session.
    return Call(
        "POST",
        "sessions",
        Session.model_validate,
        body=body,
        idempotent=False,
        summary="sessions.create",
    )


def get_session(ref: SessionRef) -> Call[Session]:
    return Call(
        "GET", f"sessions/{session_id(ref)}", Session.model_validate, summary="sessions.get"
    )


def list_sessions(
    *, page_size: int | None = None, page_token: str | None = None, filter: str | None = None
) -> Call[ListSessionsResponse]:
    return Call(
        "GET",
        "sessions",
        ListSessionsResponse.model_validate,
        params=_page_params(page_size=page_size, page_token=page_token, filter=filter),
        summary="sessions.list",
    )


def delete_session(ref: SessionRef) -> Call[None]:
    return Call("DELETE", f"sessions/{session_id(ref)}", _nothing, summary="sessions.delete")


def _verb(
    ref: SessionRef,
    verb: str,
    *,
    body: dict[str, Any] | None = None,
    idempotent: bool = True,
    extension: str | None = None,
) -> Call[None]:
    return Call(
        "POST",
        f"sessions/{session_id(ref)}:{verb}",
        _nothing,
        body=body if body is not None else {},
        idempotent=idempotent,
        extension=extension,
        summary=f"sessions.{verb}",
    )


def send_message(ref: SessionRef, prompt: str) -> Call[None]:
    # Not idempotent: a repeat would say it twice.
    return _verb(ref, "sendMessage", body={"prompt": prompt}, idempotent=False)


def approve_plan(ref: SessionRef) -> Call[None]:
    return _verb(ref, "approvePlan")


def archive_session(ref: SessionRef) -> Call[None]:
    return _verb(ref, "archive")


def unarchive_session(ref: SessionRef) -> Call[None]:
    return _verb(ref, "unarchive")


def cancel_session(ref: SessionRef) -> Call[None]:
    return _verb(ref, "cancel", extension="sessions.cancel")


def pause_session(ref: SessionRef) -> Call[None]:
    return _verb(ref, "pause", extension="sessions.pause")


def resume_session(ref: SessionRef) -> Call[None]:
    return _verb(ref, "resume", extension="sessions.resume")


# --- activities -----------------------------------------------------------------------


def list_activities(
    ref: SessionRef,
    *,
    page_size: int | None = None,
    page_token: str | None = None,
    filter: str | None = None,
) -> Call[ListActivitiesResponse]:
    return Call(
        "GET",
        f"sessions/{session_id(ref)}/activities",
        ListActivitiesResponse.model_validate,
        params=_page_params(page_size=page_size, page_token=page_token, filter=filter),
        summary="sessions.activities.list",
    )


def get_activity(ref: SessionRef, activity: str) -> Call[Activity]:
    return Call(
        "GET",
        f"sessions/{session_id(ref)}/activities/{activity_id(activity)}",
        Activity.model_validate,
        summary="sessions.activities.get",
    )
