"""The API renders sessions without building the wire models (``session_wire``): the bytes
must be exactly those of ``Session.to_json()``, for every shape a session can take."""

from __future__ import annotations

import itertools
import json
import random

from pydantic_core import to_json

from openjules._timestamps import format_timestamp
from openjules._types import (
    AutomationMode,
    ChangeSet,
    GitPatch,
    PullRequest,
    SessionOutput,
    State,
)
from openjules.store.session_wire import (
    WIRE_COLUMNS,
    render_session,
    row_body,
    session_json,
    wire_timestamp,
)
from openjules.store.sessions import SessionRecord

BASE = "http://host.example"
OUTPUTS = [
    [],
    [
        SessionOutput(
            change_set=ChangeSet(
                source="sources/github/o/r",
                git_patch=GitPatch(unidiff_patch='+é "q" \\ \t\x01\u2028', base_commit_id="c"),
            )
        )
    ],
    [SessionOutput(pull_request=PullRequest(url="https://x/1", title="tï", head_ref="h"))],
]


def _records() -> list[SessionRecord]:
    shapes = itertools.product(
        [None, "sources/github/o/r"],
        [None, "", "main"],
        [None, "", "work"],
        ["", 'Tïtle "q" \\ \n'],
        ["p", "😀 \x1f\x7f</script>"],
        [False, True],
        OUTPUTS,
        [State.QUEUED, State.COMPLETED],
    )
    return [
        SessionRecord(
            id="1234567890123456789",
            owner_id=1,
            state=state,
            prompt=prompt,
            title=title,
            source_name=source,
            starting_branch=branch,
            working_branch=working,
            require_plan_approval=True,
            automation_mode=AutomationMode.AUTO_CREATE_PR,
            archived=archived,
            outputs=outputs,
            create_time=1_700_000_000_123_456,
            update_time=1_700_000_001_000_000,
        )
        for source, branch, working, title, prompt, archived, outputs, state in shapes
    ]


def _row(record: SessionRecord) -> tuple[object, ...]:
    # As store.transitions writes them.
    stored = json.dumps([o.to_wire() for o in record.outputs], separators=(",", ":"))
    values = {
        "id": record.id,
        "prompt": record.prompt,
        "title": record.title,
        "source_name": record.source_name,
        "starting_branch": record.starting_branch,
        "working_branch": record.working_branch,
        "create_time": record.create_time,
        "update_time": record.update_time,
        "state": record.state.value,
        "outputs": stored if record.outputs else "[]",
        "archived": int(record.archived),  # as SQLite returns it
    }
    return tuple(values[column.key] for column in WIRE_COLUMNS)


def test_sessions_render_exactly_as_the_wire_model_does() -> None:
    for record in _records():
        expected = render_session(record, base_url=BASE).to_json()
        assert session_json(record, base_url=BASE) == expected
        assert to_json(row_body(_row(record), base_url=BASE)) == expected


def test_timestamps_render_exactly_as_format_timestamp_does() -> None:
    rng = random.Random(13)
    samples = [0, 1, 999_999, 1_000_000, 1_700_000_000_123_456, 253_402_300_799_999_999]
    samples += [rng.randrange(0, 2**53) for _ in range(20_000)]
    for us in samples:
        assert wire_timestamp(us) == format_timestamp(us)
