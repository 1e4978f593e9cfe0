"""How values read to people: state names, ages, counts. Template filters and globals."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from openjules._types import State
from openjules.store.clock import parse_timestamp_ns

STATE_LABELS = {
    State.STATE_UNSPECIFIED: "Unknown",
    State.QUEUED: "Queued",
    State.PLANNING: "Planning",
    State.AWAITING_PLAN_APPROVAL: "Awaiting plan approval",
    State.AWAITING_USER_FEEDBACK: "Awaiting your reply",
    State.IN_PROGRESS: "In progress",
    State.PAUSED: "Paused",
    State.FAILED: "Failed",
    State.COMPLETED: "Completed",
}
# A badge's tone (its colour and mark), so states are told apart at a glance and not by
# colour alone: waiting on a person, working, done, failed, idle.
STATE_TONES = {
    State.STATE_UNSPECIFIED: "idle",
    State.QUEUED: "idle",
    State.PLANNING: "working",
    State.AWAITING_PLAN_APPROVAL: "waiting",
    State.AWAITING_USER_FEEDBACK: "waiting",
    State.IN_PROGRESS: "working",
    State.PAUSED: "idle",
    State.FAILED: "failed",
    State.COMPLETED: "done",
}
TONE_MARKS = {"idle": "○", "working": "◐", "waiting": "!", "done": "✓", "failed": "✕"}


def state_label(state: State | str) -> str:
    return STATE_LABELS.get(State(state), str(state))


def state_tone(state: State | str) -> str:
    return STATE_TONES.get(State(state), "idle")


def tone_mark(tone: str) -> str:
    return TONE_MARKS.get(tone, "○")


def age(timestamp: str, *, now_s: float | None = None) -> str:
    """``2025-01-01T00:00:00.000000Z`` → "3 min ago" (to the coarsest unit that fits)."""
    if not timestamp:
        return ""
    try:
        then_s = parse_timestamp_ns(timestamp) / 1e9
    except ValueError:
        return timestamp
    seconds = max(0, int((time.time() if now_s is None else now_s) - then_s))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def when(timestamp: str) -> str:
    """An RFC 3339 timestamp as a person reads it: ``2025-01-01 12:30 UTC``."""
    if not timestamp:
        return ""
    return timestamp[:16].replace("T", " ") + " UTC"


def quote_path(path: str) -> str:
    return quote(path, safe="/")


FILTERS: dict[str, Any] = {
    "state_label": state_label,
    "state_tone": state_tone,
    "tone_mark": tone_mark,
    "age": age,
    "when": when,
}
