"""What a page shows of a session and its activities, read off the wire models, so the
web app shows exactly what the API answers (server-rendered pages and live events both
go through here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from openjules._types import Activity, BashOutput, Media, PlanStep, Session, State
from openjules.store import transitions
from openjules.store.transitions import Event
from openjules.web import formatting
from openjules.web.diffs import FileDiff, split_patch


def repository_of(source_name: str) -> str:
    """``sources/github/OWNER/REPO`` → ``OWNER/REPO``."""
    prefix = "sources/github/"
    return source_name[len(prefix) :] if source_name.startswith(prefix) else source_name


@dataclass(frozen=True)
class SessionView:
    wire: Session

    @property
    def id(self) -> str:
        return self.wire.id

    @property
    def title(self) -> str:
        return self.wire.title or "(untitled)"

    @property
    def state(self) -> State:
        return self.wire.state

    @property
    def state_label(self) -> str:
        return formatting.state_label(self.state)

    @property
    def tone(self) -> str:
        return formatting.state_tone(self.state)

    @property
    def repository(self) -> str:
        context = self.wire.source_context
        return repository_of(context.source) if context else ""

    @property
    def branch(self) -> str:
        context = self.wire.source_context
        repo = context.github_repo_context if context else None
        return repo.starting_branch if repo else ""

    @property
    def working_branch(self) -> str:
        context = self.wire.source_context
        return context.working_branch if context else ""

    @property
    def repoless(self) -> bool:
        return self.wire.source_context is None

    @property
    def pull_request_url(self) -> str:
        for output in self.wire.outputs:
            if output.pull_request and output.pull_request.url:
                return output.pull_request.url
        return ""

    @property
    def final_patch(self) -> str:
        for output in self.wire.outputs:
            if output.change_set and output.change_set.git_patch:
                return output.change_set.git_patch.unidiff_patch
        return ""

    # What a person may do now: what the transition table allows.
    @property
    def can_approve(self) -> bool:
        return transitions.allowed(Event.PLAN_APPROVED, self.state)

    @property
    def can_pause(self) -> bool:
        return transitions.allowed(Event.PAUSED, self.state)

    @property
    def can_resume(self) -> bool:
        return transitions.allowed(Event.RESUMED, self.state)

    @property
    def can_cancel(self) -> bool:
        return transitions.allowed(Event.CANCELLED, self.state)

    @property
    def waiting_for_answer(self) -> bool:
        return self.state is State.AWAITING_USER_FEEDBACK

    @property
    def working(self) -> bool:
        """The agent works (or is about to): the states a pause applies to."""
        return transitions.allowed(Event.PAUSED, self.state)


@dataclass(frozen=True)
class ChangeSetView:
    patch: str
    files: list[FileDiff] = field(default_factory=list)

    @classmethod
    def of(cls, patch: str) -> ChangeSetView:
        return cls(patch=patch, files=split_patch(patch))

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)


# Each activity kind's CSS class and the words a person reads for it.
KIND_NAMES = {
    "agent_messaged": ("agent-message", "Agent"),
    "user_messaged": ("user-message", "You"),
    "plan_generated": ("plan", "Plan"),
    "plan_approved": ("plan-approved", "Plan approved"),
    "progress_updated": ("progress", "Progress"),
    "session_completed": ("completed", "Session completed"),
    "session_failed": ("failed", "Session failed"),
}


@dataclass(frozen=True)
class ActivityView:
    wire: Activity

    @property
    def id(self) -> str:
        return self.wire.id

    @cached_property
    def kind_key(self) -> str:
        for key in KIND_NAMES:
            if getattr(self.wire, key) is not None:
                return key
        return ""

    @property
    def css(self) -> str:
        return KIND_NAMES.get(self.kind_key, ("other", ""))[0]

    @property
    def heading(self) -> str:
        return KIND_NAMES.get(self.kind_key, ("", "Activity"))[1]

    @property
    def originator(self) -> str:
        return self.wire.originator

    @property
    def message(self) -> str:
        wire = self.wire
        if wire.agent_messaged:
            return wire.agent_messaged.agent_message
        if wire.user_messaged:
            return wire.user_messaged.user_message
        if wire.session_failed:
            return wire.session_failed.reason
        return ""

    @property
    def progress_title(self) -> str:
        return self.wire.progress_updated.title if self.wire.progress_updated else ""

    @property
    def progress_description(self) -> str:
        return self.wire.progress_updated.description if self.wire.progress_updated else ""

    @property
    def plan_steps(self) -> list[PlanStep]:
        plan = self.wire.plan_generated.plan if self.wire.plan_generated else None
        return sorted(plan.steps, key=lambda s: s.index) if plan else []

    @property
    def commands(self) -> list[BashOutput]:
        """The commands it ran: its bashOutput artifacts, or (where those are off, the
        default) the command progress Jules describes in text."""
        return self.wire.commands()

    @property
    def media(self) -> list[Media]:
        return [a.media for a in self.wire.artifacts if a.media is not None and a.media.data]

    @cached_property
    def changed_files(self) -> list[FileDiff]:
        files: list[FileDiff] = []
        for artifact in self.wire.artifacts:
            patch = artifact.change_set.git_patch if artifact.change_set else None
            if patch is not None:
                files += split_patch(patch.unidiff_patch)
        return files

    @property
    def has_changes(self) -> bool:
        return any(a.change_set is not None for a in self.wire.artifacts)

    @property
    def is_agent_message(self) -> bool:
        return self.kind_key == "agent_messaged"

    @property
    def time(self) -> str:
        return self.wire.create_time


def latest_change_set(activities: list[Activity]) -> str | None:
    """The patch of the latest changeSet among ``activities`` (None: none yet)."""
    for activity in reversed(activities):
        for artifact in reversed(activity.artifacts):
            if artifact.change_set and artifact.change_set.git_patch:
                return artifact.change_set.git_patch.unidiff_patch
    return None
