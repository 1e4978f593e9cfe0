"""Which patch is a session's result."""

from __future__ import annotations

from collections.abc import Iterable

from openjules._types import Activity, GitPatch, Session


def output_patch(session: Session) -> GitPatch | None:
    """The patch among the session's outputs (a session that ended with changes has one)."""
    for output in session.outputs:
        if output.change_set is not None and output.change_set.git_patch is not None:
            return output.change_set.git_patch
    return None


def last_activity_patch(activities: Iterable[Activity]) -> GitPatch | None:
    """The last changeSet an activity carried: the work so far, before the session ends."""
    found: GitPatch | None = None
    for activity in activities:
        for artifact in activity.artifacts:
            if artifact.change_set is not None and artifact.change_set.git_patch is not None:
                found = artifact.change_set.git_patch
    return found
