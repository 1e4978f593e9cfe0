"""Reading one session for its page: the session and all its activities, owner-scoped."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from openjules._types import Activity
from openjules.api.state import AppState
from openjules.store import activities, sessions
from openjules.store.query import Filter
from openjules.store.session_wire import render_session
from openjules.store.users import User
from openjules.web.views import ActivityView, ChangeSetView, SessionView, latest_change_set

# Activities read per query (a long session takes several).
READ_PAGE = 500


@dataclass(frozen=True)
class SessionPage:
    session: SessionView
    activities: list[ActivityView]
    last_activity_ns: int  # the live stream continues after this

    @property
    def changes(self) -> ChangeSetView | None:
        """The final patch once there is one, else the latest changeSet so far."""
        patch = self.session.final_patch or latest_change_set([a.wire for a in self.activities])
        return None if patch is None else ChangeSetView.of(patch)

    @property
    def question_id(self) -> str:
        """The agent message the session waits on an answer to ("" when it does not)."""
        if not self.session.waiting_for_answer:
            return ""
        messages = [a for a in self.activities if a.is_agent_message]
        return messages[-1].id if messages else ""


async def read_session_page(request: Request, *, user: User, session_id: str) -> SessionPage:
    state = AppState.of(request)
    sessions.check_session_id(session_id)
    async with state.db.read() as conn:
        record = await sessions.get(conn, owner_id=user.id, session_id=session_id)
        records: list[activities.ActivityRecord] = []
        after: int | None = None
        while True:
            page, token = await activities.list_page(
                conn, session_id=session_id, flt=Filter(), page_size=READ_PAGE, after_ns=after
            )
            records += page
            if not token:
                break
            after = int(token)
    views = [ActivityView(Activity.model_validate_json(r.render())) for r in records]
    last_ns = records[-1].create_time * 1000 if records else -1
    session = SessionView(render_session(record, base_url=state.public_base_url))
    return SessionPage(session=session, activities=views, last_activity_ns=last_ns)
