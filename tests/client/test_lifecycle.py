"""A whole session driven through the SDK, ``Client`` and ``AsyncClient``, on both
backends: the agent at work (the fake model, real git and bubblewrap) on a local source
repository, with plan approval and a question answered; the final patch applies with
``git apply``; a stream opened at the start sees the whole session, each activity once.

One live server with workers per backend serves both flavours (one session each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openjules.client import DONE, NEEDS_INPUT, Client, State
from openjules.testing import LiveServer
from tests.agent_kit import Scripts, local_source, new_key
from tests.client.conftest import OpenSDK
from tests.client.lifecycle_support import kind_of
from tests.client.stream_support import Collector
from tests.engine.agent_support import needs_bubblewrap
from tests.engine.worker_support import call
from tests.support import git, make_repo

pytestmark = needs_bubblewrap

ORIGINAL = "print('hello')\n"
EDITED = "print('hello, world')\n"
QUESTION = "Whom should the app greet?"
ANSWER = "The whole world, please."
# An agent session takes a few seconds; this is only how long a broken one may hang.
SESSION_S = 120.0
EXPECTED_KINDS = [
    "planGenerated",
    "planApproved",
    "agentMessaged",  # the question
    "userMessaged",  # the answer
    "progressUpdated",  # the command
    "sessionCompleted",
]


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("sdk-greeter"), {"app.py": ORIGINAL})


@pytest.fixture(scope="module")
def greeter_source(agent: LiveServer, greeter: Path) -> str:
    return local_source(agent, greeter, "sdk-greeter")


def script(scripts: Scripts) -> str:
    """A session's prompt: plan, (approval), question, (answer), edit, command, finish."""
    return scripts.prompt(
        "Make the app greet the world",
        [
            call(
                "propose_plan",
                steps=[{"title": "Greet the world", "description": "Edit app.py."}],
            ),
            call("ask_user", text=QUESTION),
            call("edit_file", path="app.py", old_text="'hello'", new_text="'hello, world'"),
            call("shell", command="python3 app.py"),
            call("finish", summary="The app greets the world.", commit_message="Greet the world"),
        ],
    )


def ending(jules: Client, session: str) -> str:
    """What a session's last activity says (a failure's reason), for assertion messages."""
    last = list(jules.list_activities(session))[-1:]
    return f"the last activity: {last[0].model_dump(exclude_defaults=True)}" if last else ""


def test_plan_approval_question_completion_and_a_patch_that_applies(
    agent: LiveServer,
    scripts: Scripts,
    greeter: Path,
    greeter_source: str,
    open_sdk: OpenSDK,
    tmp_path: Path,
) -> None:
    jules = open_sdk(agent.url, new_key(agent, "sdk"))
    created = jules.create_session(
        prompt=script(scripts), source=greeter_source, require_plan_approval=True
    )
    assert created.state is State.QUEUED
    assert created.source_context is not None
    assert created.source_context.source == greeter_source
    # Followed from the start, in a thread of its own, while the test drives the session.
    watched = Collector(jules.stream_activities(created))

    # DONE too: a session that failed is reported at once, with its reason.
    waiting = jules.wait(created, until=NEEDS_INPUT | DONE, timeout=SESSION_S)
    assert waiting.state is State.AWAITING_PLAN_APPROVAL, ending(jules, created.id)
    jules.approve_plan(waiting)

    asking = jules.wait(created.id, until=NEEDS_INPUT | DONE, timeout=SESSION_S)
    assert asking.state is State.AWAITING_USER_FEEDBACK, ending(jules, created.id)
    messages = [a for a in jules.list_activities(created) if a.agent_messaged is not None]
    assert [m.agent_messaged.agent_message for m in messages if m.agent_messaged] == [QUESTION]
    jules.send_message(asking, ANSWER)

    done = jules.wait(created.name, until=DONE, timeout=SESSION_S)
    assert done.state is State.COMPLETED, ending(jules, created.id)

    # The stream ended by itself at the completion, having yielded what the list holds.
    streamed = watched.join(seconds=SESSION_S)
    listed = list(jules.list_activities(created))
    assert [a.id for a in streamed] == [a.id for a in listed]
    assert [kind_of(a) for a in listed] == EXPECTED_KINDS
    assert len({a.id for a in streamed}) == len(streamed)
    answer = listed[EXPECTED_KINDS.index("userMessaged")].user_messaged
    assert answer is not None
    assert answer.user_message == ANSWER

    patch = jules.patch(done)
    assert patch is not None
    assert patch.base_commit_id == git("rev-parse", "HEAD", cwd=greeter).strip()
    clone = tmp_path / "clone"
    git("clone", "-q", str(greeter), str(clone), cwd=tmp_path)
    git("checkout", "-q", patch.base_commit_id, cwd=clone)
    (tmp_path / "session.patch").write_text(patch.unidiff_patch)
    git("apply", str(tmp_path / "session.patch"), cwd=clone)
    assert (clone / "app.py").read_text() == EDITED
    assert git("status", "--porcelain", cwd=clone) == " M app.py\n"
