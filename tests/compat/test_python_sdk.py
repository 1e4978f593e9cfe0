"""The third-party Python client jules-agent-sdk 0.1.1 against a live openjules server.

The client has sources, sessions (create/get/list/approve_plan/send_message) and
activities, but no archive, unarchive, delete or repoless create (it always sends a
sourceContext). ``AsyncJulesClient`` (aiohttp) is covered too: it returns ``{}`` for any
response without Content-Length, so it notices chunked responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jules_agent_sdk import (
    AsyncJulesClient,
    JulesAPIError,
    JulesAuthenticationError,
    JulesClient,
    JulesNotFoundError,
    JulesValidationError,
)
from jules_agent_sdk.models import Activity, Session, SessionState

from openjules.testing import LiveServer
from tests import driver
from tests.compat.conftest import MISSING_REPO, OTHER_REPO
from tests.conftest import backends_with_temporal
from tests.support import MISSING_SESSION_ID, OWNER, REPO, SOURCE_NAME, api_client, git

pytestmark = pytest.mark.compat

backend = backends_with_temporal()
PATCH = """\
diff --git a/CHANGELOG.md b/CHANGELOG.md
new file mode 100644
--- /dev/null
+++ b/CHANGELOG.md
@@ -0,0 +1 @@
+# Changelog
"""


def connect(server: LiveServer, api_key: str) -> JulesClient:
    # One attempt and a short timeout: a server error must fail fast, not back off.
    return JulesClient(api_key=api_key, base_url=server.api, timeout=10, max_retries=1)


@pytest.fixture
def jules(server: LiveServer, api_key: str) -> Iterator[JulesClient]:
    with connect(server, api_key) as client:
        yield client


def kind(activity: Activity) -> str:
    kinds = {
        "agentMessaged": activity.agent_messaged,
        "userMessaged": activity.user_messaged,
        "planGenerated": activity.plan_generated,
        "planApproved": activity.plan_approved,
        "progressUpdated": activity.progress_updated,
        "sessionCompleted": activity.session_completed,
        "sessionFailed": activity.session_failed,
    }
    present = [name for name, value in kinds.items() if value is not None]
    assert len(present) == 1, f"{activity.name}: {present}"
    return present[0]


def test_sources_list_and_get(jules: JulesClient, source: str) -> None:
    page = jules.sources.list(page_size=1)
    assert len(page["sources"]) == 1
    assert page["nextPageToken"]
    rest = jules.sources.list(page_token=page["nextPageToken"])
    assert rest["nextPageToken"] is None
    paged = [s.name for s in page["sources"] + rest["sources"]]
    everything = [s.name for s in jules.sources.list_all()]
    expected = sorted([source, f"sources/github/{OWNER}/{OTHER_REPO}"])
    assert sorted(paged) == sorted(everything) == expected

    filtered = jules.sources.list_all(filter_str=f"name={SOURCE_NAME}")
    assert [s.name for s in filtered] == [SOURCE_NAME]

    # Both the short id and the full resource name work.
    for ref in (f"github/{OWNER}/{REPO}", SOURCE_NAME):
        got = jules.sources.get(ref)
        assert got.name == SOURCE_NAME
        assert got.id == f"github/{OWNER}/{REPO}"
        repo = got.github_repo
        assert repo is not None
        assert (repo.owner, repo.repo, repo.is_private) == (OWNER, REPO, False)
        assert repo.default_branch is not None
        assert repo.default_branch.display_name == "main"
        assert sorted(b.display_name for b in repo.branches) == ["develop", "feature/x", "main"]


def test_create_with_and_without_approval_and_get(jules: JulesClient, source: str) -> None:
    with_approval = jules.sessions.create(
        prompt="Add a CHANGELOG",
        source=source,
        starting_branch="develop",
        title="Changelog",
        require_plan_approval=True,
    )
    without_approval = jules.sessions.create(prompt="Fix the typo in README", source=source)
    for created in (with_approval, without_approval):
        assert created.id
        assert created.name == f"sessions/{created.id}"
        assert created.state is SessionState.QUEUED
        assert created.url.endswith(f"/session/{created.id}")
        assert created.create_time
        assert created.source_context.source == source
        # get() takes the bare id or the resource name.
        assert jules.sessions.get(created.id) == created
        assert jules.sessions.get(created.name) == created
    assert with_approval.id != without_approval.id

    assert with_approval.title == "Changelog"
    assert with_approval.prompt == "Add a CHANGELOG"
    context = with_approval.source_context.github_repo_context
    assert context is not None
    assert context.starting_branch == "develop"
    # Without a starting branch the source's default branch is used; a title is generated.
    assert without_approval.title == "Fix the typo in README"
    context = without_approval.source_context.github_repo_context
    assert context is not None
    assert context.starting_branch == "main"


def test_list_sessions_in_pages(jules: JulesClient, source: str) -> None:
    created = [
        jules.sessions.create(prompt=f"Task {i}", source=source).id for i in range(7)
    ]
    pages: list[list[Session]] = []
    token: str | None = None
    while True:
        page = jules.sessions.list(page_size=3, page_token=token)
        pages.append(page["sessions"])
        token = page["nextPageToken"]
        if not token or len(pages) > 10:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [s.id for p in pages for s in p]
    assert seen == list(reversed(created)), "every session exactly once, newest first"
    assert [s.prompt for s in pages[0]] == ["Task 6", "Task 5", "Task 4"]


def test_send_message_and_list_activities(jules: JulesClient, source: str) -> None:
    session = jules.sessions.create(prompt="Add tests", source=source)
    messages = ["Please also cover the error paths.", "And update the README.", "Thanks!"]
    for message in messages:
        jules.sessions.send_message(session.id, message)

    activities = jules.activities.list_all(session.id)
    assert [kind(a) for a in activities] == ["userMessaged"] * 3
    assert [a.user_messaged for a in activities] == [{"userMessage": m} for m in messages]
    assert all(a.originator == "user" for a in activities)
    assert all(a.name == f"sessions/{session.id}/activities/{a.id}" for a in activities)
    times = [a.create_time for a in activities]
    assert times == sorted(times), "oldest first"

    first = jules.activities.list(session.id, page_size=2)
    assert [a.id for a in first["activities"]] == [a.id for a in activities[:2]]
    assert first["nextPageToken"]
    second = jules.activities.list(session.id, page_size=2, page_token=first["nextPageToken"])
    assert [a.id for a in second["activities"]] == [activities[2].id]
    assert second["nextPageToken"] is None

    assert jules.activities.get(session.id, activities[1].id) == activities[1]


def test_approve_plan(server: LiveServer, jules: JulesClient, source: str) -> None:
    session = jules.sessions.create(
        prompt="Add a CHANGELOG", source=source, require_plan_approval=True
    )
    plan_id = driver.propose_plan(
        server.settings, session.id, steps=["Read the code", "Write it"], require_approval=True
    )
    assert jules.sessions.get(session.id).state is SessionState.AWAITING_PLAN_APPROVAL

    # approve_plan posts with no body and no Content-Type.
    jules.sessions.approve_plan(session.id)
    assert jules.sessions.get(session.id).state is SessionState.IN_PROGRESS

    activities = jules.activities.list_all(session.id)
    assert [kind(a) for a in activities] == ["planGenerated", "planApproved"]
    plan: dict[str, Any] = (activities[0].plan_generated or {})["plan"]
    assert plan["id"] == plan_id
    assert [s["title"] for s in plan["steps"]] == ["Read the code", "Write it"]
    assert activities[1].plan_approved == {"planId": plan_id}
    assert activities[1].originator == "user"

    # Nothing is pending any more: FAILED_PRECONDITION (400).
    with pytest.raises(JulesValidationError) as caught:
        jules.sessions.approve_plan(session.id)
    assert caught.value.status_code == 400
    assert caught.value.response is not None
    assert caught.value.response["error"]["status"] == "FAILED_PRECONDITION"


def test_wait_for_completion_and_change_set(
    server: LiveServer, jules: JulesClient, source: str, git_repo: Path
) -> None:
    session = jules.sessions.create(prompt="Add a CHANGELOG", source=source)
    driver.propose_plan(server.settings, session.id, steps=["Write it"], require_approval=False)
    driver.add_progress(server.settings, session.id, titles=["Writing"])
    head = git("rev-parse", "HEAD", cwd=git_repo).strip()
    driver.complete(server.settings, session.id, patch=PATCH, base_commit=head, source=source)

    done = jules.sessions.wait_for_completion(session.id, poll_interval=1, timeout=10)
    assert done.state is SessionState.COMPLETED
    assert len(done.outputs) == 1  # a changeSet output; this client models only pullRequest

    activities = jules.activities.list_all(session.id)
    assert [kind(a) for a in activities] == [
        "planGenerated", "planApproved", "progressUpdated", "sessionCompleted",
    ]
    assert activities[1].originator == "system"  # auto-approved
    assert activities[2].progress_updated == {"title": "Writing"}
    [artifact] = activities[-1].artifacts
    assert artifact.change_set is not None
    assert artifact.change_set.source == source
    patch = artifact.change_set.git_patch
    assert patch is not None
    assert patch.unidiff_patch == PATCH
    assert patch.base_commit_id == head
    assert patch.suggested_commit_message


def test_error_classes(server: LiveServer, jules: JulesClient, source: str) -> None:
    with connect(server, "not-a-valid-key") as wrong:
        with pytest.raises(JulesAuthenticationError) as auth:
            wrong.sources.list()
        assert auth.value.status_code == 401
        assert auth.value.message == "API key not valid. Please pass a valid API key."
        with pytest.raises(JulesAuthenticationError):
            wrong.sessions.get(MISSING_SESSION_ID)

    with pytest.raises(JulesNotFoundError) as missing:
        jules.sessions.get(MISSING_SESSION_ID)
    assert missing.value.status_code == 404
    with pytest.raises(JulesNotFoundError):
        jules.sources.get(f"github/{MISSING_REPO}")
    with pytest.raises(JulesNotFoundError):
        jules.activities.list_all(MISSING_SESSION_ID)
    with pytest.raises(JulesNotFoundError):
        jules.sessions.send_message(MISSING_SESSION_ID, "Anyone there?")

    invalid_creates: dict[str, dict[str, Any]] = {
        "unknown source": {"prompt": "Hello", "source": f"sources/github/{MISSING_REPO}"},
        "empty prompt": {"prompt": "", "source": source},
        "unknown branch": {"prompt": "Hello", "source": source, "starting_branch": "nope"},
    }
    for case, arguments in invalid_creates.items():
        with pytest.raises(JulesValidationError) as invalid:
            jules.sessions.create(**arguments)
        assert invalid.value.status_code == 400, case
        # The message is the server's error.message, not the raw body.
        assert invalid.value.message, case
        assert not invalid.value.message.startswith("{"), case
    session = jules.sessions.create(prompt="Hello", source=source)
    with pytest.raises(JulesValidationError):
        jules.sessions.send_message(session.id, "")
    assert issubclass(JulesValidationError, JulesAPIError)


def test_async_client(server: LiveServer, api_key: str, source: str) -> None:
    async def scenario() -> dict[str, Any]:
        async with AsyncJulesClient(api_key=api_key, base_url=server.api) as jules:
            sources = await jules.sources.list_all()
            created = await jules.sessions.create(
                prompt="Add a CHANGELOG", source=source, starting_branch="develop"
            )
            fetched = await jules.sessions.get(created.id)
            await jules.sessions.send_message(created.id, "Keep it short.")
            return {
                "sources": sorted(s.name for s in sources),
                "created": created,
                "fetched": fetched,
                "listed": (await jules.sessions.list(page_size=10))["sessions"],
                "activities": await jules.activities.list_all(created.id),
                "source": await jules.sources.get(SOURCE_NAME),
            }

    seen = asyncio.run(scenario())
    assert SOURCE_NAME in seen["sources"]
    created: Session = seen["created"]
    assert created.id, "the create response was parsed, not replaced by {}"
    assert created.state is SessionState.QUEUED
    assert seen["fetched"] == created
    assert [s.id for s in seen["listed"]] == [created.id]
    assert [a.user_messaged for a in seen["activities"]] == [{"userMessage": "Keep it short."}]
    assert seen["source"].name == SOURCE_NAME


def test_read_a_paused_and_a_cancelled_session(
    server: LiveServer, api_key: str, jules: JulesClient, source: str
) -> None:
    """Our :pause and :cancel (the client has no such calls; plain HTTP here) leave
    sessions the client reads without error: PAUSED is a Jules state."""
    paused = jules.sessions.create(prompt="Pause", source=source)
    cancelled = jules.sessions.create(prompt="Cancel", source=source)
    with api_client(server.api, api_key) as http:
        assert http.post(f"/sessions/{paused.id}:pause").json()["state"] == "PAUSED"
        assert http.post(f"/sessions/{cancelled.id}:cancel").json()["state"] == "FAILED"
    jules.sessions.send_message(paused.id, "While paused")

    got = jules.sessions.get(paused.id)
    assert got.state is SessionState.PAUSED
    activities = jules.activities.list_all(paused.id)
    assert [kind(a) for a in activities] == ["progressUpdated", "userMessaged"]
    assert activities[0].progress_updated == {"title": "Paused by the user"}
    assert activities[0].originator == "user"
    assert jules.sessions.get(cancelled.id).state is SessionState.FAILED
    [failed] = jules.activities.list_all(cancelled.id)
    assert failed.session_failed == {"reason": "Cancelled by the user."}
    listed = {s.id: s.state for s in jules.sessions.list(page_size=10)["sessions"]}
    assert listed == {paused.id: SessionState.PAUSED, cancelled.id: SessionState.FAILED}
