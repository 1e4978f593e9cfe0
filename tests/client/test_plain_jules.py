"""The SDK against a plain Jules server: ``PlainJules`` in front of a live openjules
server offers exactly Jules' twelve v1alpha methods, forwarded unchanged, and answers
everything else as Google's front end answers an unknown URL (404, an HTML page). Sync
``Client`` and ``AsyncClient``, on both backends.

What each SDK call needs of the server:

=====================  ===============================  ==============================
SDK call               Jules method(s)                  On a plain Jules server
=====================  ===============================  ==============================
list_sources(_page)    sources.list                     works
get_source             sources.get                      works
create_session         sessions.create                  works
get_session            sessions.get                     works
list_sessions(_page)   sessions.list                    works
delete_session         sessions.delete                  works
send_message           sessions.sendMessage             works
approve_plan           sessions.approvePlan             works
archive_session        sessions.archive                 works
unarchive_session      sessions.unarchive               works
list_activities(_pg)   sessions.activities.list         works
get_activity           sessions.activities.get          works
patch                  sessions.get, activities.list    works
stream_activities      sessions.activities.list         works, by polling (no alt=sse)
wait                   sessions.get                     works, by polling (no alt=sse)
cancel_session         (openjules extension)            Unsupported
pause_session          (openjules extension)            Unsupported
resume_session         (openjules extension)            Unsupported
=====================  ===============================  ==============================
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openjules.client import (
    NEEDS_INPUT,
    APIError,
    FailedPrecondition,
    NotFound,
    State,
    Unsupported,
)
from openjules.testing import JULES_METHOD_NAMES, LiveServer, PlainJules, PlainRequest
from tests import driver
from tests.api.session_support import add_source
from tests.client.lifecycle_support import Flavour, closing, connect, kind_of
from tests.support import OWNER, REPO

FLAVOURS = pytest.mark.parametrize("flavour", list(Flavour), ids=str)
# The extensions, as the test ids name them.
EXTENSIONS = ["cancel", "pause", "resume"]
POLL_INTERVAL_S = 0.05
WAIT_TIMEOUT_S = 30.0
PATCH = "--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n # demo\n+Changed.\n"
BASE_COMMIT = "0" * 40


@pytest.fixture(scope="module")
def plain(server: LiveServer) -> Iterator[PlainJules]:
    with PlainJules(upstream=server.url) as jules:
        yield jules


@pytest.fixture(scope="module")
def source(server: LiveServer, git_repo: Path) -> str:
    return add_source(server, git_repo)


def seen_by(plain: PlainJules, api_key: str) -> list[PlainRequest]:
    """What ``plain`` saw of one test's requests (its user's key)."""
    return [r for r in plain.requests if r.headers.get("x-goog-api-key") == api_key]


@FLAVOURS
def test_the_twelve_jules_methods_work(
    flavour: Flavour, server: LiveServer, plain: PlainJules, source: str, api_key: str
) -> None:
    jules = connect(flavour, base_url=plain.url, api_key=api_key)
    try:
        assert source in [s.name for s in jules.list_sources()]
        got = jules.get_source(f"{OWNER}/{REPO}")
        assert got.name == source
        assert got.github_repo is not None
        assert (got.github_repo.owner, got.github_repo.repo) == (OWNER, REPO)

        created = jules.create_session(
            prompt="Add a CHANGELOG", source=source, starting_branch="main", title="Changelog"
        )
        assert created.state is State.QUEUED
        assert created.source_context is not None
        assert created.source_context.source == source
        fetched = jules.get_session(created.id)
        assert (fetched.id, fetched.title, fetched.prompt) == (
            created.id,
            "Changelog",
            "Add a CHANGELOG",
        )
        assert [s.id for s in jules.list_sessions()] == [created.id]

        # approvePlan reaches the server, which refuses it: there is no plan yet.
        with pytest.raises(FailedPrecondition) as refused:
            jules.approve_plan(created)
        assert "no plan awaiting approval" in refused.value.message
        driver.propose_plan(server.settings, created.id, steps=["Write it"], require_approval=True)
        jules.approve_plan(created)
        jules.send_message(created, "Mention the release date")
        activities = list(jules.list_activities(created))
        assert [kind_of(a) for a in activities] == ["planGenerated", "planApproved", "userMessaged"]
        assert activities[2].user_messaged is not None
        assert activities[2].user_messaged.user_message == "Mention the release date"
        assert jules.get_activity(created, activities[0].id) == activities[0]

        jules.archive_session(created)
        assert jules.get_session(created).archived
        assert [s.id for s in jules.list_sessions(filter="archived = true")] == [created.id]
        jules.unarchive_session(created)
        assert not jules.get_session(created).archived
        assert list(jules.list_sessions(filter="archived = true")) == []

        jules.delete_session(created)
        with pytest.raises(NotFound):
            jules.get_session(created)
    finally:
        jules.close()
    # Every call was one of Jules' methods (none refused as an unknown URL), all twelve
    # were used, and each carried the user's key (the server answered as that user).
    called = [r.jules_method for r in seen_by(plain, api_key)]
    assert None not in called
    assert set(called) == JULES_METHOD_NAMES


@FLAVOURS
@pytest.mark.parametrize("verb", EXTENSIONS)
def test_extensions_are_unsupported(
    flavour: Flavour, verb: str, plain: PlainJules, api_key: str
) -> None:
    jules = connect(flavour, base_url=plain.url, api_key=api_key)
    try:
        session = jules.create_session(prompt="Add a CHANGELOG")
        with pytest.raises(Unsupported) as refused:
            getattr(jules, f"{verb}_session")(session)
        assert isinstance(refused.value, APIError)
        assert f"sessions.{verb} is an openjules extension" in refused.value.message
        assert plain.url in refused.value.message
        # Nothing happened to the session.
        assert jules.get_session(session).state is State.QUEUED
    finally:
        jules.close()
    refused_requests = [r for r in seen_by(plain, api_key) if r.jules_method is None]
    assert [(r.method, r.path) for r in refused_requests] == [
        ("POST", f"/v1alpha/sessions/{session.id}:{verb}")
    ]


@FLAVOURS
def test_stream_activities_falls_back_to_polling(
    flavour: Flavour, server: LiveServer, plain: PlainJules, api_key: str
) -> None:
    jules = connect(flavour, base_url=plain.url, api_key=api_key, poll_interval=POLL_INTERVAL_S)
    try:
        session = jules.create_session(prompt="Add a CHANGELOG")
        driver.propose_plan(server.settings, session.id, steps=["Write it"], require_approval=False)
        with closing(jules.stream_activities(session)) as stream:
            first = next(stream)
            # The rest happens while the stream is open: later polls must find it.
            driver.add_progress(server.settings, session.id, titles=["Wrote CHANGELOG.md"])
            driver.complete(server.settings, session.id, patch=PATCH, base_commit=BASE_COMMIT)
            streamed = [first, *stream]
        listed = list(jules.list_activities(session))
        patch = jules.patch(session)
    finally:
        jules.close()
    assert [a.id for a in streamed] == [a.id for a in listed]
    assert kind_of(streamed[0]) == "planGenerated"
    assert kind_of(streamed[-1]) == "sessionCompleted"
    assert "progressUpdated" in [kind_of(a) for a in streamed]
    assert patch is not None
    assert patch.unidiff_patch == PATCH
    # One try at a stream (alt=sse, which plain Jules ignores), then plain polls that
    # resume after the last activity handed out.
    path = f"/v1alpha/sessions/{session.id}/activities"
    lists = [r for r in seen_by(plain, api_key) if r.path == path]
    assert lists[0].params.get("alt") == ["sse"]
    assert all("alt" not in r.params for r in lists[1:])
    assert any('create_time>"' in r.params.get("filter", [""])[0] for r in lists[1:])


@FLAVOURS
def test_wait_falls_back_to_polling(
    flavour: Flavour, server: LiveServer, plain: PlainJules, api_key: str
) -> None:
    jules = connect(flavour, base_url=plain.url, api_key=api_key, poll_interval=POLL_INTERVAL_S)
    try:
        session = jules.create_session(prompt="Add a CHANGELOG", require_plan_approval=True)
        path = f"/v1alpha/sessions/{session.id}"

        def polls(requests: list[PlainRequest]) -> int:
            return sum(1 for r in requests if r.path == path and "alt" not in r.params)

        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(jules.wait, session, until=NEEDS_INPUT, timeout=WAIT_TIMEOUT_S)
            # Move the session on only once the wait is polling: it must notice the change.
            plain.wait_for(lambda requests: polls(requests) >= 2)
            driver.propose_plan(
                server.settings, session.id, steps=["Write it"], require_approval=True
            )
            reached = waiting.result(timeout=WAIT_TIMEOUT_S)
        assert reached.state is State.AWAITING_PLAN_APPROVAL
        # Already there: the wait returns at once.
        assert jules.wait(session, until={State.AWAITING_PLAN_APPROVAL}).id == session.id
    finally:
        jules.close()
    gets = [r for r in seen_by(plain, api_key) if r.path == path]
    assert gets[0].params.get("alt") == ["sse"]
    assert all("alt" not in r.params for r in gets[1:])
