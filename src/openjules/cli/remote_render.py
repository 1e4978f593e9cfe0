"""What ``remote watch`` shows of each activity: the plan's steps, each command with the
end of its output, the agent's and the user's messages, changes and how the session ended.

Each activity becomes a few ``rich.text.Text`` lines: styled on a terminal, their plain
text otherwise. Everything the agent or a person wrote is put in ``Text`` as is (never
parsed as markup), so brackets in it print as brackets.
"""

from __future__ import annotations

import re
import time

from rich.text import Text

from openjules._timestamps import parse_timestamp_ns
from openjules._types import Activity, BashOutput, GitPatch, Session, State

# How Jules (and openjules' shell tool) describe a command in a progress update's text:
# A command's output is shown by its last lines, each cut to a width.
OUTPUT_LINES = 6
OUTPUT_LINE_CHARS = 160
_DIFF_HEADER = re.compile(r"^diff --git a/(?P<old>.+?) b/(?P<new>.+)$", re.MULTILINE)
INDENT = "    "


def changed_files(patch: GitPatch) -> list[str]:
    return [m["new"] for m in _DIFF_HEADER.finditer(patch.unidiff_patch)]


def clock(timestamp: str) -> str:
    """HH:MM:SS in local time, or nothing for a timestamp that cannot be read."""
    try:
        seconds = parse_timestamp_ns(timestamp) / 1e9
    except ValueError:
        return ""
    return time.strftime("%H:%M:%S", time.localtime(seconds))


def _indented(text: str, *, style: str = "") -> list[Text]:
    return [Text(INDENT + line, style=style) for line in text.rstrip("\n").splitlines()]


def _command_lines(command: BashOutput) -> list[Text]:
    lines = [Text(f"{INDENT}$ {command.command}", style="bold")]
    output = command.output.rstrip("\n").splitlines()
    if len(output) > OUTPUT_LINES:
        lines.append(Text(f"{INDENT}  … {len(output) - OUTPUT_LINES} lines before", style="dim"))
        output = output[-OUTPUT_LINES:]
    for line in output:
        cut = line if len(line) <= OUTPUT_LINE_CHARS else line[: OUTPUT_LINE_CHARS - 1] + "…"
        lines.append(Text(f"{INDENT}  {cut}", style="dim"))
    if command.exit_code != 0:
        lines.append(Text(f"{INDENT}  (exit code {command.exit_code})", style="red"))
    return lines


def _headline(activity: Activity, label: str, style: str) -> Text:
    stamp = clock(activity.create_time)
    return Text.assemble((f"{stamp} " if stamp else "", "dim"), (label, style))


def activity_lines(activity: Activity) -> list[Text]:
    """The lines that show ``activity``: a headline, then what it holds."""
    lines: list[Text] = []
    if (plan := activity.plan_generated) is not None:
        steps = plan.plan.steps if plan.plan else []
        lines.append(_headline(activity, f"Plan ({len(steps)} steps)", "bold cyan"))
        for number, step in enumerate(steps, start=1):
            lines.append(Text.assemble(f"{INDENT}{number}. ", (step.title, "bold")))
            if step.description:
                lines += _indented(INDENT[:3] + step.description, style="dim")
    elif activity.plan_approved is not None:
        lines.append(_headline(activity, "Plan approved", "green"))
    elif (progress := activity.progress_updated) is not None:
        commands = activity.commands()
        lines.append(_headline(activity, progress.title or "Progress", "blue"))
        if commands:
            for command in commands:
                lines += _command_lines(command)
        elif progress.description and progress.description != progress.title:
            lines += _indented(progress.description)
    elif (agent := activity.agent_messaged) is not None:
        lines.append(_headline(activity, "Agent:", "bold magenta"))
        lines += _indented(agent.agent_message)
    elif (user := activity.user_messaged) is not None:
        lines.append(_headline(activity, "You:", "bold"))
        lines += _indented(user.user_message)
    elif activity.session_completed is not None:
        lines.append(_headline(activity, "Session completed", "bold green"))
    elif (failed := activity.session_failed) is not None:
        lines.append(_headline(activity, "Session failed", "bold red"))
        if failed.reason:
            lines += _indented(failed.reason, style="red")
    else:
        lines.append(_headline(activity, activity.description or "Activity", ""))
    lines += _artifact_lines(activity)
    return lines


def _artifact_lines(activity: Activity) -> list[Text]:
    lines = []
    for artifact in activity.artifacts:
        change = artifact.change_set
        if change is not None and change.git_patch is not None:
            files = changed_files(change.git_patch)
            if files:
                lines.append(Text(f"{INDENT}Changed: {', '.join(files)}", style="yellow"))
        if artifact.media is not None:
            lines.append(Text(f"{INDENT}[{artifact.media.mime_type or 'media'}]", style="dim"))
    return lines


def header_lines(session: Session) -> list[Text]:
    """Which session is followed: its title, repository and branch, state and page."""
    context = session.source_context
    where = "no repository"
    if context is not None:
        where = context.source.removeprefix("sources/github/")
        branch = context.github_repo_context.starting_branch if context.github_repo_context else ""
        if branch:
            where += f" @ {branch}"
    return [
        Text.assemble((f"Session {session.id}", "bold"), ": ", session.title or "(untitled)"),
        Text(f"{INDENT}{where} · {session.state.value} · {session.url}", style="dim"),
    ]


def waiting_lines(session: Session) -> list[Text]:
    """What to run when the session waits for a person (nothing otherwise)."""
    if session.state is State.AWAITING_PLAN_APPROVAL:
        what, run = "Waiting for plan approval", f"openjules remote approve {session.id}"
    elif session.state is State.AWAITING_USER_FEEDBACK:
        what, run = "Waiting for your answer", f'openjules remote message {session.id} "…"'
    elif session.state is State.PAUSED:
        what, run = "Paused", f"openjules remote resume {session.id}"
    else:
        return []
    return [Text.assemble((f"{what}: run ", "bold yellow"), (run, "bold"))]


def ending_lines(session: Session) -> list[Text]:
    """How the session ended, and how to get its work."""
    if session.state is State.COMPLETED:
        lines = [Text(f"Session {session.id} COMPLETED.", style="bold green")]
        for output in session.outputs:
            if output.pull_request is not None and output.pull_request.url:
                lines.append(Text(f"{INDENT}Pull request: {output.pull_request.url}"))
            if output.change_set is not None and output.change_set.git_patch is not None:
                lines.append(Text(f"{INDENT}Patch: openjules remote pull --session {session.id}"))
        return lines
    return [Text(f"Session {session.id} {session.state.value}.", style="bold red")]
