"""The Temporal workflow of one session (``TemporalRunner``): it decides when the
session's work runs and on which worker; the database stays the truth of what the work is.

One workflow per session, its id derived from the session's (``workflow_id``). Every
wake-up (a create, an approval, a message, a resume) is a signal-with-start of ``WAKE``:
it starts the workflow if none runs, or tells the running one to run the session once
more after the current run. A run is the activity ``RUN_SESSION`` (the worker's
``run_session`` under the job's lease), heartbeating, retried with backoff. The workflow
ends when no wake-up came during its last run, i.e. when the session waits for a person
or has ended: a waiting session holds no workflow task, activity or worker. ``STOP`` (the
session was cancelled, paused or deleted) cancels the running activity, which hears of it
through its heartbeat.

Workflow code must be deterministic: only this module's own state and Temporal's APIs,
no clock, I/O or settings (what the settings decide comes in ``SessionRun``). It runs
outside Temporal's sandbox (it imports nothing the sandbox would have to re-import).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError

WORKFLOW = "openjules.session"
RUN_SESSION = "openjules.run_session"
WAKE = "wake"
STOP = "stop"
# Runs per workflow execution before it continues as new: a session woken many times
# (a long conversation) keeps a short history.
RUNS_PER_EXECUTION = 100


def workflow_id(session_id: str) -> str:
    """The workflow of a session: its id names the session (found with `temporal workflow
    describe --workflow-id openjules-session-ID`)."""
    return f"openjules-session-{session_id}"


@dataclass(frozen=True)
class SessionRun:
    """The workflow's input: the session, and the activity's limits from the settings."""

    session_id: str
    # Longest one run of the session may take (the agent's wall limit and more).
    run_timeout_seconds: float
    # A worker that sends no heartbeat for this long is taken for dead: its run is
    # retried elsewhere.
    heartbeat_timeout_seconds: float
    # Wake-ups not yet answered when the previous execution continued as new.
    carried_wakes: int = 0


RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,  # unlimited: the jobs table counts the work's own failures
)


@workflow.defn(name=WORKFLOW, sandboxed=False)
class SessionWorkflow:
    def __init__(self) -> None:
        self._wakes = 0
        self._running: workflow.ActivityHandle[None] | None = None

    @workflow.signal(name=WAKE)
    def wake(self) -> None:
        self._wakes += 1

    @workflow.signal(name=STOP)
    def stop(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()

    @workflow.run
    async def run(self, params: SessionRun) -> None:
        # Signals of an activation are applied before the run starts, so the
        # signal-with-start that started this execution is counted already.
        self._wakes += params.carried_wakes
        answered, runs = 0, 0
        while self._wakes > answered:  # asked for since the last run began
            if runs == RUNS_PER_EXECUTION:
                workflow.continue_as_new(replace(params, carried_wakes=self._wakes - answered))
            runs += 1
            answered = self._wakes
            self._running = workflow.start_activity(
                RUN_SESSION,
                params.session_id,
                result_type=type(None),
                start_to_close_timeout=timedelta(seconds=params.run_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=params.heartbeat_timeout_seconds),
                retry_policy=RETRIES,
                # The next run starts only once this one has stopped (its command killed,
                # its job given back).
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            try:
                await self._running
            except ActivityError as err:
                if not isinstance(err.cause, CancelledError):
                    raise
            finally:
                self._running = None
