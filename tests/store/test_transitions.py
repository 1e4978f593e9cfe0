"""The session state machine, pair by pair: every event applied to a session in every state.

The expectation below is written out by hand from the lifecycle of DESIGN.md §4 and
jules-api.md §9; it is deliberately not read from ``transitions.TRANSITIONS``, so a change
to the table that nobody meant shows up here. Each case puts a real session row into the
state, applies the event through ``transitions.apply`` on a real database (SQLite and
PostgreSQL, one database per backend for the module), and checks the session's state, its
activities and its job:

- an allowed pair moves to exactly the expected state (or stays), appends the given
  activities after the ones already there, and enqueues the job exactly when expected;
- a forbidden pair raises FailedPrecondition and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import pairwise

import pytest
from sqlalchemy import select, update

from openjules._errors import FailedPrecondition, NotFound
from openjules._types import (
    AgentMessaged,
    ChangeSet,
    CreateSessionRequest,
    GitPatch,
    Originator,
    ProgressUpdated,
    SessionOutput,
    State,
)
from openjules.settings import Settings
from openjules.store import activities, sessions, tables, transitions, users
from openjules.store.activities import MIN_ACTIVITY_GAP_US, NewActivity
from openjules.store.clock import now_us
from openjules.store.database import Database
from openjules.store.migrate import upgrade_to_head
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter

STAY = None  # the event leaves the state as it is

# event name -> {state a session is in -> (state it moves to, or STAY; whether the job is
# enqueued)}. A pair not listed must be refused. A PAUSED session (seeded as paused while
# IN_PROGRESS) takes only a message, a cancel and a resume.
EXPECTED: dict[str, dict[str, tuple[str | None, bool]]] = {
    "START_PLANNING": {"QUEUED": ("PLANNING", False)},
    "START_WORK": {"QUEUED": ("IN_PROGRESS", False), "IN_PROGRESS": (STAY, False)},
    "PLAN_AWAITS_APPROVAL": {"PLANNING": ("AWAITING_PLAN_APPROVAL", False)},
    "PLAN_AUTO_APPROVED": {"PLANNING": ("IN_PROGRESS", False)},
    # approvePlan: the agent has stopped to wait, so the approval puts it back to work.
    "PLAN_APPROVED": {"AWAITING_PLAN_APPROVAL": ("IN_PROGRESS", True)},
    "AGENT_ASKED": {
        "PLANNING": ("AWAITING_USER_FEEDBACK", False),
        "IN_PROGRESS": ("AWAITING_USER_FEEDBACK", False),
    },
    "AGENT_MESSAGED": {"PLANNING": (STAY, False), "IN_PROGRESS": (STAY, False)},
    "PROGRESS": {"PLANNING": (STAY, False), "IN_PROGRESS": (STAY, False)},
    # sendMessage: a running agent reads it before its next model call; a session that
    # waits for a person, or has ended, is woken and queued again.
    "USER_MESSAGED": {
        "QUEUED": (STAY, False),
        "PLANNING": (STAY, False),
        "IN_PROGRESS": (STAY, False),
        "AWAITING_PLAN_APPROVAL": ("QUEUED", True),
        "AWAITING_USER_FEEDBACK": ("QUEUED", True),
        "COMPLETED": ("QUEUED", True),
        "FAILED": ("QUEUED", True),
        # Kept: the agent reads it once the session is resumed.
        "PAUSED": (STAY, False),
    },
    "COMPLETED": {"IN_PROGRESS": ("COMPLETED", False)},
    # Errors and limits fail any active session; an ended one refuses.
    "FAILED": {
        "QUEUED": ("FAILED", False),
        "PLANNING": ("FAILED", False),
        "IN_PROGRESS": ("FAILED", False),
        "AWAITING_PLAN_APPROVAL": ("FAILED", False),
        "AWAITING_USER_FEEDBACK": ("FAILED", False),
    },
    # :cancel ends any session that has not ended, paused ones too.
    "CANCELLED": {
        "QUEUED": ("FAILED", False),
        "PLANNING": ("FAILED", False),
        "IN_PROGRESS": ("FAILED", False),
        "AWAITING_PLAN_APPROVAL": ("FAILED", False),
        "AWAITING_USER_FEEDBACK": ("FAILED", False),
        "PAUSED": ("FAILED", False),
    },
    # :pause holds a session the agent works on (or is about to); :resume puts it back
    # where it was, and back in the queue.
    "PAUSED": {
        "QUEUED": ("PAUSED", False),
        "PLANNING": ("PAUSED", False),
        "IN_PROGRESS": ("PAUSED", False),
    },
    "RESUMED": {"PAUSED": ("IN_PROGRESS", True)},
}

# Every state a session row can hold (the API never stores STATE_UNSPECIFIED).
STATES = [s for s in State if s is not State.STATE_UNSPECIFIED]
CASES = [(event, state) for event in Event for state in STATES]

# What a seeded session already has.
EARLIER = NewActivity(kind=ProgressUpdated(title="Read the code"), originator=Originator.AGENT)
# What each case appends: two activities, so that order and spacing are visible too.
NEW_ACTIVITIES = (
    NewActivity(kind=ProgressUpdated(title="Ran the tests"), originator=Originator.AGENT),
    NewActivity(kind=AgentMessaged(agent_message="All green."), originator=Originator.AGENT),
)
NEW_KINDS = ["progressUpdated", "agentMessaged"]
FINAL_OUTPUTS = [
    SessionOutput(
        change_set=ChangeSet(
            source="sources/github/acme/demo",
            git_patch=GitPatch(unidiff_patch="--- a/x\n+++ b/x\n", base_commit_id="abc123"),
        )
    )
]


def test_the_expectation_covers_exactly_the_events_and_states() -> None:
    """A new event or state must be given a row here before the table can use it."""
    assert set(EXPECTED) == {e.name for e in Event}
    known = {s.value for s in STATES}
    for rules in EXPECTED.values():
        assert set(rules) <= known
        assert {to for to, _ in rules.values() if to is not None} <= known


@dataclass(frozen=True)
class Store:
    url: str
    owner_id: int


@pytest.fixture(scope="module")
def store(server_settings: Settings) -> Store:
    """This module's database (fresh, migrated) and a user who owns every session in it."""
    url = server_settings.resolved_database_url()
    upgrade_to_head(url)

    async def make_user() -> int:
        db = Database(url)
        try:
            async with db.write() as conn:
                return (await users.get_or_create_user(conn, name="transitions")).id
        finally:
            await db.dispose()

    return Store(url=url, owner_id=asyncio.run(make_user()))


@pytest.fixture
async def db(store: Store) -> AsyncIterator[Database]:
    database = Database(store.url)
    yield database
    await database.dispose()


async def seed(db: Database, owner_id: int, state: State) -> str:
    """A session created the ordinary way, then put into ``state`` with one activity
    already recorded and its job done (so that an enqueue is visible)."""
    async with db.write() as conn:
        record = await sessions.create(
            conn, owner_id=owner_id, request=CreateSessionRequest(prompt="Add a CHANGELOG")
        )
        earlier = now_us()
        await activities.append(
            ConnectionWriter(conn), session_id=record.id, activity=EARLIER, at=earlier
        )
        await conn.execute(
            update(tables.sessions)
            .where(tables.sessions.c.id == record.id)
            .values(
                state=state.value,
                last_activity_time=earlier,
                paused_from=State.IN_PROGRESS.value if state is State.PAUSED else None,
            )
        )
        await conn.execute(
            update(tables.jobs).where(tables.jobs.c.session_id == record.id).values(state="done")
        )
    return record.id


@dataclass(frozen=True)
class Snapshot:
    state: str
    update_time: int
    last_activity_time: int
    outputs: str
    activities: list[tuple[str, int, str]]  # (id, createTime, kind), oldest first
    job: tuple[str, int] | None  # (state, generation)


async def snapshot(db: Database, session_id: str) -> Snapshot:
    s, a, j = tables.sessions.c, tables.activities.c, tables.jobs.c
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(s.state, s.update_time, s.last_activity_time, s.outputs).where(
                    s.id == session_id
                )
            )
        ).one()
        acts = (
            await conn.execute(
                select(a.id, a.create_time, a.kind)
                .where(a.session_id == session_id)
                .order_by(a.create_time)
            )
        ).all()
        job = (
            await conn.execute(select(j.state, j.generation).where(j.session_id == session_id))
        ).first()
    return Snapshot(
        state=row.state,
        update_time=row.update_time,
        last_activity_time=row.last_activity_time,
        outputs=row.outputs,
        activities=[(x.id, x.create_time, x.kind) for x in acts],
        job=None if job is None else (job.state, job.generation),
    )


@pytest.mark.parametrize(("event", "state"), CASES, ids=[f"{e.name}-{s.value}" for e, s in CASES])
async def test_apply(db: Database, store: Store, event: Event, state: State) -> None:
    session_id = await seed(db, store.owner_id, state)
    before = await snapshot(db, session_id)
    outputs = FINAL_OUTPUTS if event is Event.COMPLETED else None

    refused: FailedPrecondition | None = None
    result: transitions.TransitionResult | None = None
    # The transaction commits even when the event is refused: whatever apply wrote before
    # refusing would be kept, and seen below.
    async with db.write() as conn:
        try:
            result = await transitions.apply(
                ConnectionWriter(conn),
                session_id=session_id,
                event=event,
                new_activities=NEW_ACTIVITIES,
                outputs=outputs,
                owner_id=store.owner_id,
            )
        except FailedPrecondition as exc:
            refused = exc
    after = await snapshot(db, session_id)

    rule = EXPECTED.get(event.name, {}).get(state.value)
    if rule is None:
        assert refused is not None, f"{event.name} on {state.value} was allowed"
        assert after == before
        return

    assert refused is None, f"{event.name} on {state.value} was refused: {refused}"
    assert result is not None
    to, enqueues = rule
    target = to or state.value
    assert after.state == target
    assert (result.previous.value, result.state.value) == (state.value, target)

    # The new activities come after the earlier one, in order and at least 1 ms apart.
    assert after.activities[:1] == before.activities
    added = after.activities[1:]
    assert [kind for _, _, kind in added] == NEW_KINDS
    assert [r.id for r in result.activities] == [i for i, _, _ in added]
    times = [t for _, t, _ in after.activities]
    assert all(b - a >= MIN_ACTIVITY_GAP_US for a, b in pairwise(times))
    assert after.last_activity_time == times[-1]
    assert after.update_time >= times[-1]

    if outputs is None:
        assert after.outputs == before.outputs
    else:
        assert json.loads(after.outputs) == [o.to_wire() for o in outputs]

    assert before.job == ("done", 1)
    assert after.job == (("ready", 2) if enqueues else before.job)


@pytest.mark.parametrize("enqueues", [False, True])
async def test_a_transition_without_activities_changes_only_the_state(
    db: Database, store: Store, enqueues: bool
) -> None:
    """No activities: last_activity_time and the activity list are left alone."""
    state, event = (
        (State.AWAITING_USER_FEEDBACK, Event.USER_MESSAGED)
        if enqueues
        else (State.QUEUED, Event.START_PLANNING)
    )
    session_id = await seed(db, store.owner_id, state)
    before = await snapshot(db, session_id)
    async with db.write() as conn:
        result = await transitions.apply(ConnectionWriter(conn), session_id=session_id, event=event)
    after = await snapshot(db, session_id)
    assert result.activities == []
    assert after.activities == before.activities
    assert after.last_activity_time == before.last_activity_time
    assert after.state != before.state
    assert after.job == (("ready", 2) if enqueues else before.job)


async def test_another_owners_session_is_not_found_and_unchanged(
    db: Database, store: Store
) -> None:
    session_id = await seed(db, store.owner_id, State.QUEUED)
    before = await snapshot(db, session_id)
    with pytest.raises(NotFound):
        async with db.write() as conn:
            await transitions.apply(
                ConnectionWriter(conn),
                session_id=session_id,
                event=Event.START_PLANNING,
                new_activities=NEW_ACTIVITIES,
                owner_id=store.owner_id + 1,
            )
    assert await snapshot(db, session_id) == before


async def job_of(db: Database, session_id: str) -> tuple[str, int, str | None]:
    j = tables.jobs.c
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(j.state, j.generation, j.lease_owner).where(j.session_id == session_id)
            )
        ).one()
    return (row.state, row.generation, row.lease_owner)


async def apply_event(db: Database, session_id: str, event: Event) -> transitions.TransitionResult:
    async with db.write() as conn:
        return await transitions.apply(ConnectionWriter(conn), session_id=session_id, event=event)


@pytest.mark.parametrize("working", ["QUEUED", "PLANNING", "IN_PROGRESS"])
async def test_resume_puts_the_session_back_where_it_was_paused(
    db: Database, store: Store, working: str
) -> None:
    session_id = await seed(db, store.owner_id, State(working))
    paused = await apply_event(db, session_id, Event.PAUSED)
    assert (paused.previous.value, paused.state) == (working, State.PAUSED)
    # A message while paused keeps it paused (and remembers where it was).
    await apply_event(db, session_id, Event.USER_MESSAGED)
    resumed = await apply_event(db, session_id, Event.RESUMED)
    assert resumed.state.value == working
    assert (await job_of(db, session_id))[:2] == ("ready", 2)
    async with db.read() as conn:
        paused_from = (
            await conn.execute(
                select(tables.sessions.c.paused_from).where(tables.sessions.c.id == session_id)
            )
        ).scalar()
    assert paused_from is None
    # Resumed means no longer paused: a second resume is refused.
    with pytest.raises(FailedPrecondition, match="paused"):
        await apply_event(db, session_id, Event.RESUMED)


@pytest.mark.parametrize("event", [Event.PAUSED, Event.CANCELLED])
async def test_a_waiting_job_is_withdrawn_and_a_leased_one_left_to_its_worker(
    db: Database, store: Store, event: Event
) -> None:
    waiting = await seed(db, store.owner_id, State.QUEUED)
    running = await seed(db, store.owner_id, State.IN_PROGRESS)
    j = tables.jobs.c
    async with db.write() as conn:
        await conn.execute(update(tables.jobs).where(j.session_id == waiting).values(state="ready"))
        await conn.execute(
            update(tables.jobs)
            .where(j.session_id == running)
            .values(state="leased", lease_owner="w1", lease_expire_time=now_us() + 10**9)
        )
    await apply_event(db, waiting, event)
    await apply_event(db, running, event)
    assert await job_of(db, waiting) == ("done", 1, None)
    # Only its worker lets go of it (jobs.finish), so nobody else can start the session
    # while that worker still runs it.
    assert await job_of(db, running) == ("leased", 1, "w1")
    if event is Event.PAUSED:
        # A quick resume: still the first worker's, who must run it again when it lets go.
        await apply_event(db, running, Event.RESUMED)
        assert await job_of(db, running) == ("leased", 2, "w1")


@pytest.mark.parametrize("state", STATES)
async def test_a_step_is_held_only_while_the_session_works(
    db: Database, store: Store, state: State
) -> None:
    session_id = await seed(db, store.owner_id, state)
    async with db.write() as conn:
        if state in (State.QUEUED, State.PLANNING, State.IN_PROGRESS):
            await transitions.hold_working(ConnectionWriter(conn), session_id=session_id)
        else:
            with pytest.raises(FailedPrecondition, match=state.value):
                await transitions.hold_working(ConnectionWriter(conn), session_id=session_id)
    with pytest.raises(NotFound):
        async with db.write() as conn:
            await transitions.hold_working(ConnectionWriter(conn), session_id="1234567890123456789")
