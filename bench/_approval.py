"""What a person waits for around a plan: create -> the first activity, and approvePlan ->
the agent's next activity, for one session with ``requirePlanApproval``.

Activities are watched on the session's activity stream (``activities?alt=sse``: the
history, then each activity as it commits), the way the web app and ``openjules remote
watch`` see them. A stream shows an activity as soon as its transaction commits, where
polling the list would add up to a poll interval to every figure and, at the 5 ms a poll
would need, load the server (in this process) with the requests it times.

The plan is approved once the planning run has ended (its workspace removed, the spare
tree for the next session checked out), as it would have by the time a person has read
the plan; the next session starts once the previous one's last run ended. Both figures
are then the steady state, not a run queued behind another's clean-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from _scripted import BenchError, missing_edits, session_patch

TIMEOUT = 120.0
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ApprovalTimes:
    session_id: str
    first_activity: float  # create request sent -> first activity on the stream
    first_kind: str  # what that activity is (planGenerated)
    approved_seen: float  # approvePlan request sent -> its planApproved on the stream
    next_activity: float  # approvePlan request sent -> the next activity after planApproved
    next_kind: str
    # Seconds by part of the timing hook's spans that ended within each interval.
    first_parts: dict[str, float]
    next_parts: dict[str, float]


def kind_of(activity: dict[str, Any]) -> str:
    """The activity's kind: its one field besides the common ones."""
    common = {"name", "id", "createTime", "originator", "description", "artifacts"}
    kinds = [k for k in activity if k not in common]
    return kinds[0] if kinds else "?"


def stream_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON data of each event of a Server-Sent Events response."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


def _between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v > before.get(k, 0.0)}


def time_approval(
    client: httpx.Client,
    *,
    source: str,
    number: int,
    settle: Callable[[str, int], None],
    spans: Callable[[str], dict[str, float]],
) -> ApprovalTimes:
    """Create a session that waits for plan approval, approve its plan once it shows and
    the planning run ended (``settle(session_id, runs)`` waits for that), and time both;
    then wait until it COMPLETED with the scripted edits and its last run ended.
    ``spans(session_id)`` gives the seconds by part its runs spent so far."""
    began = time.perf_counter()
    created = client.post(
        "/sessions",
        json={
            "prompt": f"Benchmark session {number}: plan, wait for approval, then work.",
            "sourceContext": {"source": source, "githubRepoContext": {"startingBranch": "main"}},
            "requirePlanApproval": True,
        },
    )
    if created.status_code != 200:
        raise BenchError(f"create session: HTTP {created.status_code} {created.text[:300]}")
    sid = created.json()["id"]
    first = approved = following = 0.0
    first_kind = following_kind = ""
    approve_began = 0.0
    at_first: dict[str, float] = {}
    at_approve: dict[str, float] = {}
    at_next: dict[str, float] = {}
    with client.stream(
        "GET", f"/sessions/{sid}/activities", params={"alt": "sse"}, timeout=TIMEOUT
    ) as response:
        if response.status_code != 200:
            raise BenchError(f"activity stream of {sid}: HTTP {response.status_code}")
        for activity in stream_events(response):
            now = time.perf_counter()
            kind = kind_of(activity)
            if not first:
                first, first_kind = now - began, kind
                at_first = spans(sid)
                if kind != "planGenerated":
                    raise BenchError(f"session {sid}: first activity is {kind}, not a plan")
                settle(sid, 1)
                at_approve = spans(sid)
                approve_began = time.perf_counter()
                answer = client.post(f"/sessions/{sid}:approvePlan", json={})
                if answer.status_code != 200:
                    raise BenchError(f"approvePlan {sid}: HTTP {answer.status_code} {answer.text}")
            elif not approved:
                if kind != "planApproved":
                    raise BenchError(f"session {sid}: {kind} came before planApproved")
                approved = now - approve_began
            else:
                following, following_kind = now - approve_began, kind
                at_next = spans(sid)
                break
    session = wait_terminal(client, sid)
    settle(sid, 2)
    if session.get("state") != "COMPLETED":
        raise BenchError(f"session {sid} ended {session.get('state')}, not COMPLETED")
    if missing := missing_edits(session_patch(session)):
        raise BenchError(f"session {sid}: the patch lacks {missing}")
    return ApprovalTimes(
        sid,
        first,
        first_kind,
        approved,
        following,
        following_kind,
        first_parts=at_first,
        next_parts=_between(at_approve, at_next),
    )


def wait_terminal(client: httpx.Client, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        session: dict[str, Any] = client.get(f"/sessions/{sid}").json()
        if session.get("state") in ("COMPLETED", "FAILED"):
            return session
        if time.monotonic() > deadline:
            raise BenchError(f"session {sid} still {session.get('state')} after {TIMEOUT:.0f} s")
        time.sleep(POLL_SECONDS)
