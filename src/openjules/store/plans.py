"""Plans: proposed by the agent, approved by the user (or automatically)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules._errors import FailedPrecondition
from openjules._types import Originator, Plan, PlanApproved, PlanGenerated, PlanStep
from openjules.store import tables, transitions
from openjules.store.activities import NewActivity
from openjules.store.clock import format_timestamp, new_hex_id, now_us
from openjules.store.transitions import Event, TransitionResult


@dataclass(frozen=True)
class StepDraft:
    title: str
    description: str = ""


async def propose(
    conn: AsyncConnection,
    *,
    session_id: str,
    steps: list[StepDraft],
    require_approval: bool,
) -> tuple[Plan, TransitionResult]:
    """Record a plan and move to AWAITING_PLAN_APPROVAL, or auto-approve into IN_PROGRESS."""
    now = now_us()
    plan = Plan(
        id=new_hex_id(),
        steps=[
            PlanStep(id=new_hex_id(), title=s.title, description=s.description, index=i)
            for i, s in enumerate(steps)
        ],
        create_time=format_timestamp(now),
    )
    await conn.execute(
        tables.plans.insert().values(
            id=plan.id,
            session_id=session_id,
            steps=json.dumps([s.to_wire() for s in plan.steps]),
            create_time=now,
            approve_time=None if require_approval else now,
        )
    )
    generated = NewActivity(kind=PlanGenerated(plan=plan), originator=Originator.AGENT)
    if require_approval:
        result = await transitions.apply(
            conn,
            session_id=session_id,
            event=Event.PLAN_AWAITS_APPROVAL,
            new_activities=[generated],
        )
    else:
        approved = NewActivity(kind=PlanApproved(plan_id=plan.id), originator=Originator.SYSTEM)
        result = await transitions.apply(
            conn,
            session_id=session_id,
            event=Event.PLAN_AUTO_APPROVED,
            new_activities=[generated, approved],
        )
    return plan, result


async def approve_latest(
    conn: AsyncConnection, *, owner_id: int, session_id: str
) -> TransitionResult:
    """approvePlan: approve the newest plan; FAILED_PRECONDITION if none awaits approval."""
    row = (
        await conn.execute(
            select(tables.plans.c.id, tables.plans.c.approve_time)
            .join(tables.sessions, tables.sessions.c.id == tables.plans.c.session_id)
            .where(
                tables.plans.c.session_id == session_id,
                tables.sessions.c.owner_id == owner_id,
            )
            .order_by(tables.plans.c.create_time.desc())
            .limit(1)
        )
    ).first()
    plan_id = row.id if row is not None and row.approve_time is None else ""
    activity = NewActivity(kind=PlanApproved(plan_id=plan_id), originator=Originator.USER)
    result = await transitions.apply(
        conn,
        session_id=session_id,
        event=Event.PLAN_APPROVED,
        new_activities=[activity],
        owner_id=owner_id,
    )
    if not plan_id:  # the state said "awaiting approval" but no plan is pending
        raise FailedPrecondition("The session has no plan awaiting approval.")
    await conn.execute(
        update(tables.plans).where(tables.plans.c.id == plan_id).values(approve_time=now_us())
    )
    return result
