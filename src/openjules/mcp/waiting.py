"""``wait_for_session``: block until a session gets somewhere, with progress notifications
while it moves (each state it passes through) and while it does not (a heartbeat), so a
client shows what happens and does not give up on a long wait."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from mcp_types import CallToolResult
from pydantic import Field

from openjules._types import Session, State
from openjules.client import DONE, NEEDS_INPUT, SETTLED, WaitTimeout
from openjules.mcp.connection import Ctx, jules
from openjules.mcp.errors import reported
from openjules.mcp.params import SessionId
from openjules.mcp.render import session_text
from openjules.mcp.results import result

# Under the 60 s many MCP clients allow a request by default: a longer wait is a new call.
DEFAULT_TIMEOUT_S = 50.0
MAX_TIMEOUT_S = 3600.0
# How often a wait with no change says it is still waiting.
HEARTBEAT_S = 10.0


# A Literal rather than an enum: its values sit in the input schema itself (no $ref), which
# every client's schema reader understands.
Until = Literal["done", "needs_input", "settled"]
TARGETS: dict[Until, frozenset[State]] = {
    "done": DONE,
    "needs_input": NEEDS_INPUT,
    "settled": SETTLED,
}


class Progress:
    """The tool call's progress notifications: ``progress`` is the seconds waited (it must
    grow with each notification), ``total`` the timeout."""

    def __init__(self, ctx: Ctx, *, timeout: float) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self.started = time.monotonic()
        # The last value reported.
        self.last = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def report(self, message: str) -> None:
        self.last = round(max(self.elapsed(), self.last + 0.001), 3)
        await self.ctx.report_progress(self.last, self.timeout, message)


@reported
async def wait_for_session(
    ctx: Ctx,
    session: SessionId,
    until: Annotated[
        Until,
        Field(
            description="settled (default): until it needs someone (plan approval, a "
            "question), is paused, or has ended. needs_input: until it waits for plan "
            "approval or an answer. done: until COMPLETED or FAILED (a session waiting for "
            "input does not get there until someone acts)."
        ),
    ] = "settled",
    # The tool's parameter as the model reads it in the schema (not an asyncio idiom).
    timeout: Annotated[  # noqa: ASYNC109
        float,
        Field(
            ge=1,
            le=MAX_TIMEOUT_S,
            description="Give up after this many seconds and return the session as it is "
            "then; call again to keep waiting.",
        ),
    ] = DEFAULT_TIMEOUT_S,
) -> Annotated[CallToolResult, Session]:
    """Wait until a session reaches a state worth acting on, then return it. Sends
    progress notifications as its state changes and while it works. Returns on timeout
    too, with the session as it is (check its state)."""
    client = jules(ctx)
    targets = TARGETS[until]
    progress = Progress(ctx, timeout=timeout)
    current = await client.get_session(session)
    await progress.report(f"Session {current.id} is {current.state.value}")
    while current.state not in targets:
        remaining = timeout - progress.elapsed()
        if remaining <= 0:
            text = (
                f"Still {current.state.value} after {timeout:g} s (waiting for {until}); "
                "call wait_for_session again to keep waiting."
            )
            return result(current, text, session_text(current))
        # Any other state ends this wait: each change is reported as it happens.
        others = frozenset(State) - {current.state}
        try:
            changed = await client.wait(session, until=others, timeout=min(HEARTBEAT_S, remaining))
        except WaitTimeout:
            await progress.report(
                f"Session {current.id} is still {current.state.value} ({progress.elapsed():.0f} s)"
            )
            continue
        await progress.report(
            f"Session {changed.id}: {current.state.value} → {changed.state.value}"
        )
        current = changed
    waited = f"Reached {current.state.value} after {progress.elapsed():.0f} s."
    return result(current, waited, session_text(current))
