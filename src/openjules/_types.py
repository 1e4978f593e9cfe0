"""Wire models of the Jules v1alpha API: the only definition of the wire format.

Server and clients both import these. Output follows proto3 JSON as Google renders it:
lowerCamelCase names, enums as strings, default and empty values omitted, exactly one
member of every ``oneof``, and no ``type`` discriminator. Input accepts camelCase or
snake_case names and ``null`` for unset fields, as proto3 JSON parsers do.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool
from pydantic.alias_generators import to_camel


class State(StrEnum):
    STATE_UNSPECIFIED = "STATE_UNSPECIFIED"
    QUEUED = "QUEUED"
    PLANNING = "PLANNING"
    AWAITING_PLAN_APPROVAL = "AWAITING_PLAN_APPROVAL"
    AWAITING_USER_FEEDBACK = "AWAITING_USER_FEEDBACK"
    IN_PROGRESS = "IN_PROGRESS"
    PAUSED = "PAUSED"
    FAILED = "FAILED"
    COMPLETED = "COMPLETED"


class AutomationMode(StrEnum):
    AUTOMATION_MODE_UNSPECIFIED = "AUTOMATION_MODE_UNSPECIFIED"
    AUTO_CREATE_PR = "AUTO_CREATE_PR"


class Originator(StrEnum):
    USER = "user"
    AGENT = "agent"
    SYSTEM = "system"


class WireModel(BaseModel):
    """Output-side base: camelCase on the wire, tolerant of fields it does not know."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="ignore",
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_defaults=True).encode()


class RequestModel(WireModel):
    """Input-side base: unknown fields are an INVALID_ARGUMENT, as Google's front end does."""

    model_config = ConfigDict(extra="forbid")


# --- sources -------------------------------------------------------------------------


class GitHubBranch(WireModel):
    display_name: str = ""


class GitHubRepo(WireModel):
    owner: str = ""
    repo: str = ""
    is_private: bool = False
    default_branch: GitHubBranch | None = None
    branches: list[GitHubBranch] = []


class Source(WireModel):
    name: str = ""
    id: str = ""
    github_repo: GitHubRepo | None = None


class ListSourcesResponse(WireModel):
    sources: list[Source] = []
    next_page_token: str = ""


# --- sessions ------------------------------------------------------------------------


class GitHubRepoContext(WireModel):
    starting_branch: str = ""


class SourceContext(WireModel):
    source: str = ""
    github_repo_context: GitHubRepoContext | None = None
    working_branch: str = ""
    environment_variables_enabled: bool = False


class PullRequest(WireModel):
    url: str = ""
    title: str = ""
    description: str = ""
    base_ref: str = ""
    head_ref: str = ""


class GitPatch(WireModel):
    unidiff_patch: str = ""
    base_commit_id: str = ""
    suggested_commit_message: str = ""


class ChangeSet(WireModel):
    source: str = ""
    git_patch: GitPatch | None = None


class SessionOutput(WireModel):
    """A ``oneof``: exactly one of ``pull_request`` and ``change_set`` is set."""

    pull_request: PullRequest | None = None
    change_set: ChangeSet | None = None


class Session(WireModel):
    name: str = ""
    id: str = ""
    prompt: str = ""
    source_context: SourceContext | None = None
    title: str = ""
    create_time: str = ""
    update_time: str = ""
    state: State = State.STATE_UNSPECIFIED
    url: str = ""
    outputs: list[SessionOutput] = []
    archived: bool = False
    # Input-only on the wire: accepted on create, never echoed by the server.
    require_plan_approval: bool = False
    automation_mode: AutomationMode = AutomationMode.AUTOMATION_MODE_UNSPECIFIED


class ListSessionsResponse(WireModel):
    sessions: list[Session] = []
    next_page_token: str = ""


# --- activities ----------------------------------------------------------------------


class PlanStep(WireModel):
    id: str = ""
    title: str = ""
    description: str = ""
    index: int = 0


class Plan(WireModel):
    id: str = ""
    steps: list[PlanStep] = []
    create_time: str = ""


class Media(WireModel):
    data: str = ""
    mime_type: str = ""


# How Jules describes a command in a progress update's text (jules-api.md §5.10 / §9.5),
# which is all a client sees of it where bashOutput artifacts are off (the default).
COMMAND_DESCRIPTION = re.compile(
    r"\ACommand:[ \t]*\n(?P<command>.*?)\nOutput:[ \t]?(?P<output>.*?)"
    r"Exit Code:[ \t]*(?P<exit_code>-?\d+)\s*\Z",
    re.DOTALL,
)


class BashOutput(WireModel):
    command: str = ""
    output: str = ""
    exit_code: int = 0

    def description(self) -> str:
        """The command as Jules describes it in text: ``Command: \\n{command}\\nOutput:
        {output}Exit Code: {exit_code}``."""
        return f"Command: \n{self.command}\nOutput: {self.output}Exit Code: {self.exit_code}"

    @classmethod
    def from_description(cls, text: str) -> BashOutput | None:
        """The command a text in ``description()``'s shape describes; None for other text."""
        found = COMMAND_DESCRIPTION.match(text)
        if found is None:
            return None
        return cls(
            command=found["command"], output=found["output"], exit_code=int(found["exit_code"])
        )


class Artifact(WireModel):
    """A ``oneof``: exactly one of ``change_set``, ``media`` and ``bash_output`` is set."""

    change_set: ChangeSet | None = None
    media: Media | None = None
    bash_output: BashOutput | None = None


class AgentMessaged(WireModel):
    agent_message: str = ""


class UserMessaged(WireModel):
    user_message: str = ""


class PlanGenerated(WireModel):
    plan: Plan | None = None


class PlanApproved(WireModel):
    plan_id: str = ""


class ProgressUpdated(WireModel):
    title: str = ""
    description: str = ""


class SessionCompleted(WireModel):
    pass


class SessionFailed(WireModel):
    reason: str = ""


ActivityKind = (
    AgentMessaged
    | UserMessaged
    | PlanGenerated
    | PlanApproved
    | ProgressUpdated
    | SessionCompleted
    | SessionFailed
)

# The wire key of each activity kind, in the order the reference lists them.
ACTIVITY_KIND_KEYS: dict[type[WireModel], str] = {
    AgentMessaged: "agentMessaged",
    UserMessaged: "userMessaged",
    PlanGenerated: "planGenerated",
    PlanApproved: "planApproved",
    ProgressUpdated: "progressUpdated",
    SessionCompleted: "sessionCompleted",
    SessionFailed: "sessionFailed",
}


class Activity(WireModel):
    name: str = ""
    id: str = ""
    description: str = ""
    create_time: str = ""
    originator: str = ""
    artifacts: list[Artifact] = []
    agent_messaged: AgentMessaged | None = None
    user_messaged: UserMessaged | None = None
    plan_generated: PlanGenerated | None = None
    plan_approved: PlanApproved | None = None
    progress_updated: ProgressUpdated | None = None
    session_completed: SessionCompleted | None = None
    session_failed: SessionFailed | None = None

    def commands(self) -> list[BashOutput]:
        """The commands it ran: its bashOutput artifacts, or (where those are off, the
        default) the command its progress update describes in Jules' text."""
        found = [a.bash_output for a in self.artifacts if a.bash_output is not None]
        if found or self.progress_updated is None:
            return found
        described = BashOutput.from_description(self.progress_updated.description)
        return [described] if described is not None else []

    def kind(self) -> ActivityKind | None:
        for member in (
            self.agent_messaged,
            self.user_messaged,
            self.plan_generated,
            self.plan_approved,
            self.progress_updated,
            self.session_completed,
            self.session_failed,
        ):
            if member is not None:
                return member
        return None


class ListActivitiesResponse(WireModel):
    activities: list[Activity] = []
    next_page_token: str = ""


# --- webhooks (an extension of v1alpha) ----------------------------------------------


class WebhookEventType(StrEnum):
    """What a webhook can be told about (Standard Webhooks ``type``)."""

    SESSION_CREATED = "session.created"
    SESSION_STATE_CHANGED = "session.state_changed"
    SESSION_COMPLETED = "session.completed"
    SESSION_FAILED = "session.failed"
    ACTIVITY_CREATED = "activity.created"
    PULL_REQUEST_OPENED = "pull_request.opened"
    WEBHOOK_TEST = "webhook.test"


class Webhook(WireModel):
    name: str = ""
    id: str = ""
    url: str = ""
    # Empty: every event type.
    event_types: list[WebhookEventType] = []
    description: str = ""
    create_time: str = ""
    # The signing secret (``whsec_…``): only in the answer to webhooks.create.
    secret: str = ""


class ListWebhooksResponse(WireModel):
    webhooks: list[Webhook] = []
    next_page_token: str = ""


class WebhookDelivery(WireModel):
    """One attempt at delivering an event."""

    # The event's ``webhook-id`` header: the same on every attempt of one event.
    webhook_id: str = ""
    event_type: str = ""
    attempt: int = 0
    # The receiver's HTTP status; absent when no answer came (``error`` says why).
    status: int = 0
    error: str = ""
    time: str = ""


class ListWebhookDeliveriesResponse(WireModel):
    deliveries: list[WebhookDelivery] = []
    next_page_token: str = ""


# --- request bodies ------------------------------------------------------------------


class GitHubRepoContextInput(RequestModel):
    starting_branch: str | None = None


class SourceContextInput(RequestModel):
    source: str | None = None
    github_repo_context: GitHubRepoContextInput | None = None
    # Accepted for compatibility; the server decides both.
    working_branch: str | None = None
    environment_variables_enabled: StrictBool | None = None


class CreateSessionRequest(RequestModel):
    """Body of ``sessions.create``: a flat ``Session`` (bound to the request field ``session``).

    Output-only fields are accepted and ignored, as Google's front end does.
    """

    prompt: str | None = None
    source_context: SourceContextInput | None = None
    title: str | None = None
    # Strict: proto3 JSON takes true/false, not 0, 0.0 or "yes".
    require_plan_approval: StrictBool | None = None
    automation_mode: AutomationMode | None = None
    name: Any = None
    id: Any = None
    create_time: Any = None
    update_time: Any = None
    state: Any = None
    url: Any = None
    outputs: Any = None
    archived: Any = None


class CreateWebhookRequest(RequestModel):
    """Body of ``webhooks.create``. Event types are checked by the server (naming the
    unknown one); output-only fields are accepted and ignored, as on sessions.create."""

    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    name: Any = None
    id: Any = None
    create_time: Any = None
    secret: Any = None


class SendMessageRequest(RequestModel):
    prompt: str | None = None


class EmptyRequest(WireModel):
    """Body of approvePlan/archive/unarchive: absent, empty or ``{}``; extra keys ignored."""


def activity_kind_key(member: WireModel) -> str:
    return ACTIVITY_KIND_KEYS[type(member)]
