"""Where a session's wall time goes, seen from the model's side of the wire.

The fake model logs when it answers each turn of each session (bench/_model_process.py);
a request arrived ``latency`` seconds before its answer. So a session's time splits into:

- start: the create request sent -> the first model request (queueing, claiming the job,
  preparing the workspace, starting the agent);
- the model: ``latency`` per turn, 11 turns;
- between turns: the previous answer -> the next request, i.e. the platform running the
  tool the model asked for (an edit, a sandbox command, a step's checkpoint) and writing
  it down; shown by the tool asked for;
- finish: the last answer -> COMPLETED committed (the final patch, the transition).

The figures need no instrumentation of the server, so they hold for any runner.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _scripted import SCRIPT


def tool_of(turn: int) -> str:
    calls = SCRIPT[turn].tool_calls
    return calls[0].name if calls else "text"


@dataclass(frozen=True)
class SessionTurns:
    start: float
    gaps: list[tuple[str, float]]  # (tool of the previous turn, previous answer -> next request)
    finish: float

    @property
    def between(self) -> float:
        return sum(g for _, g in self.gaps)


def read_answers(log: Path, tags: Sequence[str]) -> dict[str, dict[int, float]]:
    """When each turn of the sessions tagged ``tags`` was answered (the last answer of a
    turn, should one have been retried)."""
    wanted = set(tags)
    answers: dict[str, dict[int, float]] = defaultdict(dict)
    for line in log.read_text().splitlines():
        tag, turn, at = line.split()
        if tag in wanted:
            answers[tag][int(turn)] = float(at)
    return answers


def split(
    *, answers: dict[int, float], sent: float, completed: float, latency: float
) -> SessionTurns | None:
    """One session's split (None if the log lacks some of its turns)."""
    turns = len(SCRIPT)
    if any(t not in answers for t in range(turns)):
        return None
    gaps = [(tool_of(t), answers[t + 1] - latency - answers[t]) for t in range(turns - 1)]
    return SessionTurns(
        start=answers[0] - latency - sent, gaps=gaps, finish=completed - answers[turns - 1]
    )


def summary(splits: Sequence[SessionTurns]) -> list[str]:
    """Lines: median and max over sessions of start, between turns (all, and per turn by
    the tool asked for) and finish."""
    if not splits:
        return ["(no turn log)"]

    def mm(values: Sequence[float]) -> str:
        return f"{statistics.median(values):.2f}/{max(values):.2f}"

    by_tool: dict[str, list[float]] = defaultdict(list)
    for s in splits:
        for tool, gap in s.gaps:
            by_tool[tool].append(gap)
    per_tool = ", ".join(
        f"{tool} {statistics.median(g) * 1000:.0f}/{max(g) * 1000:.0f} ms"
        for tool, g in by_tool.items()
    )
    return [
        f"start {mm([s.start for s in splits])} s, between turns {mm([s.between for s in splits])}"
        f" s, finish {mm([s.finish for s in splits])} s (median/max over sessions)",
        f"after each tool, previous answer -> next request (median/max): {per_tool}",
    ]
