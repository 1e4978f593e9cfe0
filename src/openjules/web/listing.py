"""The sessions page's view: which of a user's sessions it lists (state, archived,
title search), as one object both the page and its live stream use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from starlette.datastructures import QueryParams

from openjules._types import Session, State
from openjules.api.filters import SESSION_FIELDS, parse_filter
from openjules.api.stream_filters import session_fields_match
from openjules.store.query import Filter

PAGE_SIZE = 25


class Archived(StrEnum):
    """The "Archived" choice: not archived (the default), archived only, or all."""

    NOT = ""
    ONLY = "only"
    ALL = "all"


ARCHIVED_LABELS = {Archived.NOT: "Not archived", Archived.ONLY: "Archived", Archived.ALL: "All"}


@dataclass(frozen=True)
class SessionsView:
    state: State | None = None
    archived: Archived = Archived.NOT
    search: str = ""

    @classmethod
    def from_query(cls, query: QueryParams) -> SessionsView:
        state_name = query.get("state", "")
        state = State(state_name) if state_name in State.__members__ else None
        given = query.get("archived", "")
        archived = Archived(given) if given in set(Archived) else Archived.NOT
        return cls(state=state, archived=archived, search=query.get("q", "").strip())

    def store_filter(self) -> Filter:
        """The API's filter for this view (the same parser and semantics as sessions.list;
        it always names ``archived``, so it means the same to the list and to a stream)."""
        terms = []
        if self.state is not None:
            terms.append(f"state = {self.state.value}")
        if self.archived == Archived.ONLY:
            terms.append("archived = true")
        elif self.archived == Archived.ALL:
            terms.append("(archived = true OR archived = false)")
        else:
            terms.append("archived = false")
        return parse_filter(" AND ".join(terms), SESSION_FIELDS)

    def shows(self, session: Session, *, flt: Filter) -> bool:
        """Whether ``session`` belongs on this page (for live updates); ``flt`` is this
        view's ``store_filter()``, evaluated as the streams evaluate list filters."""
        if not session_fields_match(flt, state=session.state.value, archived=session.archived):
            return False
        return not self.search or self.search.casefold() in session.title.casefold()

    def query(self) -> dict[str, str]:
        """The view as query parameters (for links and the live stream's URL)."""
        params = {"state": self.state.value if self.state else "", "archived": self.archived.value}
        if self.search:
            params["q"] = self.search
        return {k: v for k, v in params.items() if v}
