"""The sessions page's view: which of a user's sessions it lists (state, archived,
title search), as one object both the page and its live stream use."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import QueryParams

from openjules._types import Session, State
from openjules.api.filters import SESSION_FIELDS, parse_filter
from openjules.store.query import Filter

PAGE_SIZE = 25


class Archived:
    """The "Archived" choice: not archived (the default), archived only, or all."""

    NOT = ""
    ONLY = "only"
    ALL = "all"
    CHOICES = ((NOT, "Not archived"), (ONLY, "Archived"), (ALL, "All"))


@dataclass(frozen=True)
class SessionsView:
    state: State | None = None
    archived: str = Archived.NOT
    search: str = ""

    @classmethod
    def from_query(cls, query: QueryParams) -> SessionsView:
        state_name = query.get("state", "")
        state = State(state_name) if state_name in State.__members__ else None
        archived = query.get("archived", "")
        if archived not in (Archived.NOT, Archived.ONLY, Archived.ALL):
            archived = Archived.NOT
        return cls(state=state, archived=archived, search=query.get("q", "").strip())

    def store_filter(self) -> Filter:
        """The API's filter for this view (the same parser and semantics as sessions.list)."""
        terms = []
        if self.state is not None:
            terms.append(f"state = {self.state.value}")
        if self.archived == Archived.ONLY:
            terms.append("archived = true")
        elif self.archived == Archived.ALL:
            terms.append("(archived = true OR archived = false)")
        return parse_filter(" AND ".join(terms) or None, SESSION_FIELDS)

    def shows(self, session: Session) -> bool:
        """Whether ``session`` belongs on this page (for live updates)."""
        if self.state is not None and session.state is not self.state:
            return False
        if self.archived == Archived.NOT and session.archived:
            return False
        if self.archived == Archived.ONLY and not session.archived:
            return False
        return not self.search or self.search.casefold() in session.title.casefold()

    def query(self) -> dict[str, str]:
        """The view as query parameters (for links and the live stream's URL)."""
        params = {"state": self.state.value if self.state else "", "archived": self.archived}
        if self.search:
            params["q"] = self.search
        return {k: v for k, v in params.items() if v}
