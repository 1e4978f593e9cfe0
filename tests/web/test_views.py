"""How the pages read activities: commands from artifacts or from Jules' text shape."""

from __future__ import annotations

from openjules._types import Activity, Artifact, BashOutput, ProgressUpdated
from openjules.web.views import ActivityView


def _progress(description: str, *artifacts: Artifact) -> ActivityView:
    kind = ProgressUpdated(title="Ran bash command", description=description)
    return ActivityView(Activity(progress_updated=kind, artifacts=list(artifacts)))


def test_a_command_is_read_from_its_text_when_there_is_no_artifact() -> None:
    view = _progress("Command: \nmake test\necho done\nOutput: ok\nExit Code: 0\nExit Code: 3")
    assert view.commands == [
        BashOutput(command="make test\necho done", output="ok\nExit Code: 0\n", exit_code=3)
    ]


def test_the_artifact_wins_and_other_progress_is_no_command() -> None:
    artifact = Artifact(bash_output=BashOutput(command="ls", output="a\n", exit_code=1))
    assert _progress("Command: \nx\nOutput: y\nExit Code: 0", artifact).commands == [
        artifact.bash_output
    ]
    assert _progress("Step 1 of 3 done").commands == []
    assert ActivityView(Activity()).commands == []
