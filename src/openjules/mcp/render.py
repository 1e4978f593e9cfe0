"""The readable half of each result: a few lines a model (or a person reading the
transcript) takes in at a glance, with the ids the next call needs and what to do next."""

from __future__ import annotations

from collections.abc import Sequence

from openjules._types import Activity, Artifact, GitPatch, Session, Source, State

# A command's output shown in a listing (the structured result has all of it).
OUTPUT_CHARS = 400

# What a session in each state is waiting for, as the tool to call next.
NEXT_STEP: dict[State, str] = {
    State.QUEUED: "Queued: wait_for_session follows it.",
    State.PLANNING: "The agent is planning: wait_for_session follows it.",
    State.IN_PROGRESS: "The agent is working: wait_for_session follows it.",
    State.AWAITING_PLAN_APPROVAL: (
        "Waiting for plan approval: read the plan with list_activities, then approve_plan "
        "(or send_message to ask for a different plan)."
    ),
    State.AWAITING_USER_FEEDBACK: (
        "The agent asked a question: read it with list_activities and answer with send_message."
    ),
    State.PAUSED: "Paused: it does nothing until it is resumed.",
    State.COMPLETED: "Completed: get_patch returns its changes.",
    State.FAILED: "Failed (or cancelled): list_activities shows why.",
}


def session_text(session: Session) -> str:
    lines = [f"Session {session.id} {_quoted(session.title)}: {session.state.value}"]
    lines.append(f"Source: {_where(session)}")
    if session.url:
        lines.append(f"Web: {session.url}")
    for output in session.outputs:
        if output.pull_request is not None and output.pull_request.url:
            lines.append(f"Pull request: {output.pull_request.url}")
    if session.archived:
        lines.append("Archived.")
    hint = NEXT_STEP.get(session.state)
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def session_line(session: Session) -> str:
    return f"{session.id}  {session.state.value:<22}  {_where(session)}  {session.title}"


def sessions_text(sessions: Sequence[Session], *, has_more: bool) -> str:
    if not sessions:
        return "No sessions."
    lines = [session_line(s) for s in sessions]
    if has_more:
        lines.append("(more sessions exist: raise limit or filter by state)")
    return "\n".join(lines)


def sources_text(sources: Sequence[Source], *, has_more: bool) -> str:
    if not sources:
        return "No sources: this server has no repositories (sessions can still run without one)."
    lines = [_source_line(s) for s in sources]
    if has_more:
        lines.append("(more sources exist: raise limit)")
    return "\n".join(lines)


def _source_line(source: Source) -> str:
    repo = source.github_repo
    if repo is None:
        return source.name
    default = repo.default_branch.display_name if repo.default_branch else ""
    branches = ", ".join(b.display_name for b in repo.branches)
    private = " (private)" if repo.is_private else ""
    return (
        f"{repo.owner}/{repo.repo}{private}: {source.name}; default branch {default or '?'}; "
        f"branches: {branches or '?'}"
    )


def activities_text(
    session: str, activities: Sequence[Activity], *, earlier: int, has_more: bool
) -> str:
    if not activities:
        return f"No activities in session {session} yet."
    lines = []
    if earlier:
        lines.append(f"({earlier} earlier activities not shown; raise limit to see them)")
    lines += [activity_text(a) for a in activities]
    if has_more:
        lines.append(f"(more activities follow: call again with after={activities[-1].id})")
    return "\n".join(lines)


def activity_text(activity: Activity) -> str:
    head = f"[{activity.id}] {activity.create_time} {activity.originator or '?'}: "
    lines = [head + _kind_text(activity)]
    lines += [f"    {line}" for a in activity.artifacts for line in _artifact_lines(a)]
    return "\n".join(lines)


def _kind_text(activity: Activity) -> str:
    if activity.agent_messaged is not None:
        return activity.agent_messaged.agent_message
    if activity.user_messaged is not None:
        return f"(message) {activity.user_messaged.user_message}"
    if activity.plan_generated is not None and activity.plan_generated.plan is not None:
        plan = activity.plan_generated.plan
        steps = "; ".join(f"{s.index + 1}. {s.title}: {s.description}" for s in plan.steps)
        return f"proposed plan {plan.id}: {steps}"
    if activity.plan_approved is not None:
        return f"plan {activity.plan_approved.plan_id} approved"
    if activity.progress_updated is not None:
        update = activity.progress_updated
        return f"{update.title}: {update.description}" if update.description else update.title
    if activity.session_completed is not None:
        return "session completed"
    if activity.session_failed is not None:
        return f"session failed: {activity.session_failed.reason}"
    return activity.description


def _artifact_lines(artifact: Artifact) -> list[str]:
    if artifact.bash_output is not None:
        run = artifact.bash_output
        output = run.output.strip()
        if len(output) > OUTPUT_CHARS:
            output = output[:OUTPUT_CHARS] + " …"
        return [f"$ {run.command}  (exit {run.exit_code})", *output.splitlines()]
    if artifact.change_set is not None and artifact.change_set.git_patch is not None:
        files = changed_files(artifact.change_set.git_patch)
        return [f"changes so far: {', '.join(files) or 'none'} (get_patch for the diff)"]
    if artifact.media is not None:
        return [f"media: {artifact.media.mime_type}"]
    return []


def changed_files(patch: GitPatch) -> list[str]:
    """The paths a unified diff touches, in its order."""
    return [
        line.removeprefix("diff --git a/").split(" b/", 1)[0]
        for line in patch.unidiff_patch.splitlines()
        if line.startswith("diff --git a/")
    ]


def patch_text(session: Session, patch: GitPatch | None, *, final: bool) -> str:
    if patch is None or not patch.unidiff_patch:
        return f"Session {session.id} ({session.state.value}) has no changes: no patch."
    which = "final patch" if final else "work so far (the session has not completed)"
    files = changed_files(patch)
    lines = [
        f"Session {session.id} ({session.state.value}), {which}: "
        f"{len(files)} file(s) changed: {', '.join(files)}",
    ]
    if patch.base_commit_id:
        lines.append(f"Applies to base commit {patch.base_commit_id} (git apply).")
    if patch.suggested_commit_message:
        lines.append(f"Suggested commit message: {patch.suggested_commit_message}")
    return "\n".join(lines)


def _where(session: Session) -> str:
    context = session.source_context
    if context is None or not context.source:
        return "no repository"
    repo = context.source.removeprefix("sources/github/")
    branch = context.github_repo_context.starting_branch if context.github_repo_context else ""
    return f"{repo}@{branch}" if branch else repo


def _quoted(title: str) -> str:
    return f"“{title}”" if title else "(untitled)"
