"""Sessions waiting for a person, written straight into a database through the store.

Each is a real session in AWAITING_PLAN_APPROVAL, made by the same store functions and
transitions a worker uses: created (QUEUED, a ready job), its job claimed (leased), the
planning started, a plan proposed with approval required (a planGenerated activity), the
job released (done). So the database holds what a server leaves behind when its sessions
wait for approval, without running the agent ten thousand times.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from _scripted import BenchError
from openjules._types import CreateSessionRequest
from openjules.store import jobs, plans, tables, transitions, users
from openjules.store import sessions as session_store
from openjules.store.database import Database
from openjules.store.jobs import JobState
from openjules.store.plans import StepDraft
from openjules.store.transitions import Event
from openjules.store.writer import ConnectionWriter

BATCH = 250
SEED_OWNER = "bench-seed"
LEASE_US = 60 * 1_000_000
STEPS = [
    StepDraft("Change value_0", "Edit the first module."),
    StepDraft("Add a module", "Create src/bench/added.py."),
    StepDraft("Change value_5500", "Edit module 5500."),
]


async def _seed(url: str, *, user_name: str, source: str, count: int) -> None:
    db = Database(url)
    try:
        async with db.write() as conn:
            user = await users.get_or_create_user(conn, name=user_name)
        request = CreateSessionRequest.model_validate(
            {
                "prompt": "Benchmark session waiting for its plan to be approved.",
                "sourceContext": {
                    "source": source,
                    "githubRepoContext": {"startingBranch": "main"},
                },
                "requirePlanApproval": True,
            }
        )
        for first in range(0, count, BATCH):
            async with db.write() as conn:
                for _ in range(first, min(first + BATCH, count)):
                    session = await session_store.create(conn, owner_id=user.id, request=request)
                    lease = await jobs.claim(conn, owner=SEED_OWNER, lease_us=LEASE_US)
                    if lease is None or lease.session_id != session.id:
                        raise BenchError(f"seeding: the job of session {session.id} was not next")
                    await transitions.apply(
                        ConnectionWriter(conn),
                        session_id=lease.session_id,
                        event=Event.START_PLANNING,
                    )
                    await plans.propose(
                        ConnectionWriter(conn),
                        session_id=lease.session_id,
                        steps=STEPS,
                        require_approval=True,
                    )
                    await jobs.finish(conn, lease=lease)
    finally:
        await db.dispose()


def seed_waiting(url: str, *, user_name: str, source: str, count: int) -> None:
    """``count`` sessions of user ``user_name`` on ``source``, each AWAITING_PLAN_APPROVAL
    with its plan; the database must be migrated and the source registered."""
    asyncio.run(_seed(url, user_name=user_name, source=source, count=count))


async def _jobs_by_state(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        async with db.read() as conn:
            j = tables.jobs.c
            rows = await conn.execute(select(j.state, func.count()).group_by(j.state))
            return {str(state): int(n) for state, n in rows}
    finally:
        await db.dispose()


def jobs_by_state(url: str) -> dict[str, int]:
    """How many jobs are ready, leased and done."""
    counts = asyncio.run(_jobs_by_state(url))
    return {state.value: counts.get(state.value, 0) for state in JobState}
