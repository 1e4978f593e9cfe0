"""The official TypeScript SDK, @google/jules-sdk 0.2.0, against a live openjules server.

Each test runs one script from tests/compat/node with node and asserts on the JSON
observations it prints. The SDK maps states to camelCase (``AWAITING_PLAN_APPROVAL`` ->
``awaitingPlanApproval``) and activity union keys to ``type``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from openjules.testing import LiveServer
from tests import driver
from tests.compat.conftest import MISSING_REPO, OTHER_REPO, NodeRunner
from tests.support import MISSING_SESSION_ID, OWNER, REPO, SOURCE_NAME, git

pytestmark = pytest.mark.compat

GITHUB_REPO = f"{OWNER}/{REPO}"
PATCH = """\
diff --git a/CHANGELOG.md b/CHANGELOG.md
new file mode 100644
--- /dev/null
+++ b/CHANGELOG.md
@@ -0,0 +1,2 @@
+# Changelog
+- First release
diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1,2 @@
 # demo
+See CHANGELOG.md.
"""


def test_sources_list_get_and_filter(
    node_runner: NodeRunner, server: LiveServer, api_key: str, source: str
) -> None:
    seen = node_runner.run(
        "sources.mjs", server=server, api_key=api_key, REPO=GITHUB_REPO, MISSING_REPO=MISSING_REPO
    )
    names = [s["name"] for s in seen["listed"]]
    assert sorted(names) == sorted([source, f"sources/github/{OWNER}/{OTHER_REPO}"])
    assert [s["name"] for s in seen["filtered"]] == [SOURCE_NAME]
    got = seen["got"]
    assert got["name"] == SOURCE_NAME
    assert got["id"] == f"github/{GITHUB_REPO}"
    assert got["type"] == "githubRepo"
    assert got["githubRepo"]["owner"] == OWNER
    assert got["githubRepo"]["repo"] == REPO
    # The SDK flattens branches to display names.
    assert got["githubRepo"]["defaultBranch"] == "main"
    assert sorted(got["githubRepo"]["branches"]) == ["develop", "feature/x", "main"]
    assert seen["missingIsUndefined"] is True


def test_create_with_and_without_approval_and_repoless(
    node_runner: NodeRunner, server: LiveServer, api_key: str, client: httpx.Client, source: str
) -> None:
    seen = node_runner.run(
        "create.mjs", server=server, api_key=api_key, REPO=GITHUB_REPO, BRANCH="develop"
    )
    ids = set()
    for key in ("withApproval", "withoutApproval", "repoless"):
        info = seen[key]["info"]
        assert seen[key]["clientId"] == info["id"], key
        assert info["name"] == f"sessions/{info['id']}"
        assert info["state"] == "queued"
        assert info["archived"] is False
        assert info["url"].endswith(f"/session/{info['id']}")
        assert info["createTime"].endswith("Z")
        ids.add(info["id"])
        # The server's own view matches what the SDK read back.
        wire = client.get(f"/sessions/{info['id']}").json()
        assert wire["prompt"] == info["prompt"]
        assert wire["createTime"] == info["createTime"]
    assert len(ids) == 3

    for key in ("withApproval", "withoutApproval"):
        context = seen[key]["info"]["sourceContext"]
        assert context == {"source": source, "githubRepoContext": {"startingBranch": "develop"}}
    assert seen["withApproval"]["info"]["prompt"] == "Add a CHANGELOG"
    assert seen["withApproval"]["info"]["title"] == "Add a CHANGELOG"

    repoless = seen["repoless"]["info"]
    assert repoless["sourceContext"] is None
    assert repoless["title"] == "Haiku"
    assert repoless["prompt"] == "Write a haiku about\nrefactoring"


def test_list_sessions_in_pages(
    node_runner: NodeRunner, server: LiveServer, api_key: str, client: httpx.Client
) -> None:
    created = [
        client.post("/sessions", json={"prompt": f"Task {i}"}).json()["id"] for i in range(7)
    ]
    seen = node_runner.run("paging.mjs", server=server, api_key=api_key, PAGE_SIZE="3")
    pages = seen["pages"]
    assert [len(p["ids"]) for p in pages] == [3, 3, 1]
    assert all(p["nextPageToken"] for p in pages[:-1])
    assert pages[-1]["nextPageToken"] is None
    paged = [i for p in pages for i in p["ids"]]
    assert paged == list(reversed(created)), "every session exactly once, newest first"
    assert all(state == "queued" for p in pages for state in p["states"])
    assert seen["iterated"] == paged
    assert seen["limited"] == paged[:4]


def test_archive_unarchive_delete(
    node_runner: NodeRunner, server: LiveServer, api_key: str, client: httpx.Client
) -> None:
    seen = node_runner.run("lifecycle.mjs", server=server, api_key=api_key)
    sid = seen["id"]
    steps = seen["steps"]
    assert steps["archived"]["info"] is True
    assert sid not in steps["archived"]["defaultList"]
    assert steps["archived"]["archivedList"] == [sid]
    assert steps["unarchived"]["info"] is False
    assert steps["unarchived"]["defaultList"] == [sid]
    assert steps["unarchived"]["archivedList"] == []

    assert steps["deleted"] == {"ok": True, "value": {}}
    after = steps["afterDelete"]
    assert after["info"]["ok"] is False
    assert after["info"]["error"]["isJulesApiError"] is True
    assert after["info"]["error"]["status"] == 404
    assert after["defaultList"] == []
    assert after["deleteAgain"]["error"]["status"] == 404
    assert client.get(f"/sessions/{sid}").status_code == 404


def _types(history: list[dict[str, Any]]) -> list[str]:
    return [a["type"] for a in history]


def test_send_message_and_activities(
    node_runner: NodeRunner, server: LiveServer, api_key: str
) -> None:
    seen = node_runner.run("messages.mjs", server=server, api_key=api_key)
    first = seen["firstHistory"]
    assert _types(first) == ["userMessaged"]
    assert first[0]["message"] == "Please also cover the error paths."
    assert first[0]["originator"] == "user"
    assert first[0]["name"] == f"sessions/{seen['id']}/activities/{first[0]['id']}"

    # The second history() asks only for activities after the cached one
    # (filter=create_time>"..."); the result still holds each message exactly once.
    second = seen["secondHistory"]
    assert [a["message"] for a in second] == [
        "Please also cover the error paths.",
        "And update the README.",
    ]
    assert len({a["id"] for a in second}) == 2
    assert second[0]["createTime"] < second[1]["createTime"]

    assert seen["firstPage"]["ids"] == [second[0]["id"]]
    assert seen["firstPage"]["nextPageToken"]
    assert seen["fetched"] == second[0]
    assert seen["state"] == "queued"


def test_approve_plan(
    node_runner: NodeRunner, server: LiveServer, api_key: str, client: httpx.Client, source: str
) -> None:
    created = node_runner.run(
        "create.mjs", server=server, api_key=api_key, REPO=GITHUB_REPO, BRANCH="main"
    )
    sid = created["withApproval"]["info"]["id"]
    plan_id = driver.propose_plan(
        server.settings, sid, steps=["Read the code", "Write the CHANGELOG"], require_approval=True
    )
    seen = node_runner.run("approve.mjs", server=server, api_key=api_key, SESSION_ID=sid)
    assert seen["before"] == "awaitingPlanApproval"
    assert seen["after"] == "inProgress"
    history = seen["history"]
    assert _types(history) == ["planGenerated", "planApproved"]
    plan = history[0]["plan"]
    assert plan["id"] == plan_id
    assert [s["title"] for s in plan["steps"]] == ["Read the code", "Write the CHANGELOG"]
    assert history[1]["planId"] == plan_id
    assert history[1]["originator"] == "user"
    again = seen["approveAgain"]
    assert again["ok"] is False
    assert again["error"]["isJulesApiError"] is True
    assert again["error"]["status"] == 400
    assert client.get(f"/sessions/{sid}").json()["state"] == "IN_PROGRESS"


def test_run_stream_and_result(
    node_runner: NodeRunner, server: LiveServer, api_key: str, source: str, git_repo: Path
) -> None:
    """jules.run() followed live by both stream flavours while the session runs to the end.

    Three progress updates land in one transaction: the SDK's session.stream() keeps a
    millisecond high-water mark and run().stream() compares createTime strings, so
    activities sharing a millisecond would be yielded twice or dropped.
    """
    process = node_runner.start(
        "run.mjs",
        server=server,
        api_key=api_key,
        REPO=GITHUB_REPO,
        BRANCH="main",
        EXPECT="6",
        QUIET_MS="300",
        DEADLINE_MS="15000",
    )
    try:
        sid = node_runner.read_line(process, timeout=30)["id"]
        plan_id = driver.propose_plan(
            server.settings, sid, steps=["Write the CHANGELOG"], require_approval=False
        )
        driver.add_progress(server.settings, sid, titles=["Reading", "Writing", "Checking"])
        head = git("rev-parse", "HEAD", cwd=git_repo).strip()
        driver.complete(server.settings, sid, patch=PATCH, base_commit=head, source=source)
        seen = node_runner.finish(process)
    finally:
        if process.poll() is None:
            node_runner.kill(process)

    assert seen["failures"] == []
    expected = [
        "planGenerated", "planApproved",
        "progressUpdated", "progressUpdated", "progressUpdated",
        "sessionCompleted",
    ]
    for stream in ("runStream", "sessionStream"):
        activities = seen[stream]
        assert _types(activities) == expected, stream
        assert len({a["id"] for a in activities}) == len(expected), stream
    assert seen["runStream"] == seen["sessionStream"]
    assert seen["runStream"][1]["planId"] == plan_id
    assert seen["runStream"][-1]["artifactCount"] == 1

    outcome = seen["outcome"]
    assert outcome["state"] == "completed"
    assert outcome["sessionId"] == sid
    assert outcome["title"] == "Add a CHANGELOG"
    assert outcome["pullRequest"] is None
    assert outcome["changeSet"]["summary"] == {
        "totalFiles": 2, "created": 1, "modified": 1, "deleted": 0,
    }
    assert outcome["generatedFiles"] == [
        {"path": "CHANGELOG.md", "changeType": "created",
         "content": "# Changelog\n- First release", "additions": 2, "deletions": 0},
        {"path": "README.md", "changeType": "modified",
         "content": "See CHANGELOG.md.", "additions": 1, "deletions": 0},
    ]
    assert seen["info"]["state"] == "completed"
    [output] = seen["info"]["outputs"]
    assert output["type"] == "changeSet"
    assert output["changeSet"]["gitPatch"]["baseCommitId"] == head
    assert seen["snapshot"]["activityTypes"] == expected
    assert seen["snapshot"]["changeSetArtifacts"] == [outcome["changeSet"]["summary"]]


def test_error_classes(
    node_runner: NodeRunner, server: LiveServer, api_key: str, source: str
) -> None:
    seen = node_runner.run(
        "errors.mjs",
        server=server,
        api_key=api_key,
        REPO=GITHUB_REPO,
        MISSING_REPO=MISSING_REPO,
        MISSING_SESSION_ID=MISSING_SESSION_ID,
    )
    for call, result in seen["wrongKey"].items():
        assert result["ok"] is False, call
        assert result["error"]["name"] == "JulesAuthenticationError", call
        assert result["error"]["isJulesAuthenticationError"] is True, call
        assert result["error"]["status"] == 401, call

    assert seen["unknownRepoGet"] == {"ok": True, "value": {"isUndefined": True}}
    # The SDK looks the source up before creating and raises its own error on a 404.
    assert seen["unknownRepoCreate"]["error"]["name"] == "SourceNotFoundError"

    for case in (
        "unknownSourceRaw", "unknownBranch", "emptyPrompt", "approveWithoutPlan", "emptyMessage",
    ):
        error = seen[case]["error"]
        assert error["name"] == "JulesApiError", case
        assert error["isJulesAuthenticationError"] is False, case
        assert error["status"] == 400, case
    # JulesApiError's message carries the server's error body.
    assert "INVALID_ARGUMENT" in seen["emptyPrompt"]["error"]["message"]
    assert "no-such-branch" in seen["unknownBranch"]["error"]["message"]
    assert MISSING_REPO in seen["unknownSourceRaw"]["error"]["message"]
    assert "FAILED_PRECONDITION" in seen["approveWithoutPlan"]["error"]["message"]

    for case in ("unknownSession", "sendToUnknownSession"):
        error = seen[case]["error"]
        assert error["name"] == "JulesApiError", case
        assert error["status"] == 404, case
    # No error was retried as a rate limit or server error.
    assert seen["elapsedMs"] < 5000


def test_read_a_paused_and_a_cancelled_session(
    node_runner: NodeRunner, server: LiveServer, api_key: str, client: httpx.Client, source: str
) -> None:
    """Our :pause and :cancel (the SDK has no such calls) leave sessions the SDK reads
    without error: PAUSED is a Jules state, and the activities are ordinary ones."""
    context = {"source": source}
    paused = client.post("/sessions", json={"prompt": "Pause", "sourceContext": context}).json()
    assert client.post(f"/sessions/{paused['id']}:pause").json()["state"] == "PAUSED"
    client.post(f"/sessions/{paused['id']}:sendMessage", json={"prompt": "While paused"})
    cancelled = client.post("/sessions", json={"prompt": "Cancel"}).json()
    assert client.post(f"/sessions/{cancelled['id']}:cancel").json()["state"] == "FAILED"

    seen = node_runner.run(
        "paused.mjs",
        server=server,
        api_key=api_key,
        PAUSED_ID=paused["id"],
        CANCELLED_ID=cancelled["id"],
    )
    assert seen["paused"]["state"] == "paused"
    history = seen["paused"]["history"]
    assert _types(history) == ["progressUpdated", "userMessaged"]
    assert history[0]["title"] == "Paused by the user"
    assert history[0]["originator"] == "user"
    assert history[1]["message"] == "While paused"
    # The SDK's info() refuses every FAILED session alike; the history reads fine.
    assert seen["cancelled"]["info"]["error"]["name"] == "AutomatedSessionFailedError"
    [failed] = seen["cancelled"]["history"]
    assert (failed["type"], failed["reason"]) == ("sessionFailed", "Cancelled by the user.")
    assert seen["listed"] == {paused["id"]: "paused", cancelled["id"]: "failed"}
