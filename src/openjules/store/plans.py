"""Plans: proposed by the agent, approved by the user (or automatically)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Update, bindparam, select, update

from openjules._errors import FailedPrecondition
from openjules._types import Originator, Plan, PlanApproved, PlanGenerated, PlanStep
from openjules.store import tables, transitions
from openjules.store.activities import NewActivity
from openjules.store.clock import format_timestamp, new_hex_id, now_us
from openjules.store.transitions import Event, TransitionResult
from openjules.store.writer import Writer


@dataclass(frozen=True)
class StepDraft:
    title: str
    description: str = ""


async def propose(
    writer: Writer,
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
    row = {
        "id": plan.id,
        "session_id": session_id,
        "steps": json.dumps([s.to_wire() for s in plan.steps]),
        "create_time": now,
        "approve_time": None if require_approval else now,
    }
    await writer.run("plans.insert", tables.plans.insert, row)
    generated = NewActivity(kind=PlanGenerated(plan=plan), originator=Originator.AGENT)
    if require_approval:
        result = await transitions.apply(
            writer,
            session_id=session_id,
            event=Event.PLAN_AWAITS_APPROVAL,
            new_activities=[generated],
        )
    else:
        approved = NewActivity(kind=PlanApproved(plan_id=plan.id), originator=Originator.SYSTEM)
        result = await transitions.apply(
            writer,
            session_id=session_id,
            event=Event.PLAN_AUTO_APPROVED,
            new_activities=[generated, approved],
        )
    return plan, result


async def approve_latest(writer: Writer, *, owner_id: int, session_id: str) -> TransitionResult:
    """approvePlan: approve the newest plan; FAILED_PRECONDITION if none awaits approval."""
    params = {"session_id": session_id, "owner_id": owner_id}
    found = await writer.rows("plans.latest", _latest_statement, params)
    plan_id = found[0][0] if found and found[0][1] is None else ""
    activity = NewActivity(kind=PlanApproved(plan_id=plan_id), originator=Originator.USER)
    result = await transitions.apply(
        writer,
        session_id=session_id,
        event=Event.PLAN_APPROVED,
        new_activities=[activity],
        owner_id=owner_id,
    )
    if not plan_id:  # the state said "awaiting approval" but no plan is pending
        raise FailedPrecondition("The session has no plan awaiting approval.")
    await writer.run("plans.approve", _approve_statement, {"plan_id": plan_id, "now": now_us()})
    return result


def _latest_statement() -> Select[Any]:
    p, s = tables.plans.c, tables.sessions.c
    return (
        select(p.id, p.approve_time)
        .join(tables.sessions, s.id == p.session_id)
        .where(p.session_id == bindparam("session_id"), s.owner_id == bindparam("owner_id"))
        .order_by(p.create_time.desc())
        .limit(1)
    )


def _approve_statement() -> Update:
    p = tables.plans.c
    return (
        update(tables.plans)
        .where(p.id == bindparam("plan_id"))
        .values(approve_time=bindparam("now"))
    )
