"""``TemporalRunner``: sessions run wherever a worker polls the Temporal task queue
(``OPENJULES_RUNNER=temporal``; ``pip install openjules[temporal]``).

Temporal decides who runs what and when; the database stays the truth of sessions,
activities and jobs. Each session has a workflow (``temporal_workflow``); ``submit`` is a
signal-with-start of it and ``cancel`` a signal that cancels its running activity. The
activity, on whichever worker Temporal hands it to, claims the session's job with a lease
as the local runner's dispatcher would (the per-user limits, the attempts after which a
session is given up and the fence against a second run of the same session are the
jobs table's, as there) and runs the worker's ``run_session`` under it (``LeasedRuns``).
While it runs it heartbeats to Temporal at least once a second, which is how a cancel
reaches it within that, and how a worker that died is noticed (no heartbeat for
``OPENJULES_TEMPORAL_HEARTBEAT_TIMEOUT_SECONDS``): Temporal retries the activity
elsewhere, which claims the job once the dead worker's lease has expired and continues
from the last step. A job that cannot be claimed yet (another lease, a retry delay, the
owner at their limit) fails the attempt with the delay after which to try again.

A wake-up lost on the way (Temporal unreachable when a session was created) is found in
the jobs table: workers signal jobs that stayed claimable for ``OVERDUE_S`` every
``SWEEP_S``, and every job at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from openjules._cancellation import stop_tasks
from openjules.engine.leased_runs import GiveUp, LeasedRuns, RunEnd, SessionWork, worker_identity
from openjules.engine.runner import RunnerUnavailable
from openjules.settings import Settings
from openjules.store import jobs
from openjules.store.clock import now_us
from openjules.store.database import Database
from openjules.store.jobs import JobState, Lease

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.runtime import Runtime
    from temporalio.worker import Worker

log = logging.getLogger("openjules.runner")

# How often a running activity heartbeats; the SDK sends at most one a second
# (``max_heartbeat_throttle_interval``), so a cancel reaches the run within about that.
HEARTBEAT_EVERY_S = 0.5
# A run may take the agent's wall limit plus this (setup, delivery, a slow model's end).
RUN_TIMEOUT_MARGIN_S = 3600.0
# A job of an owner at their limit is tried again this often.
USER_LIMIT_RETRY_S = 1.0
# Jobs claimable for this long without a claim have lost their wake-up; looked for this
# often, at most this many at a time.
OVERDUE_S = 15.0
SWEEP_S = 10.0
SWEEP_BATCH = 100
# How long a signal to Temporal may take before the wake-up is left to the sweep.
SIGNAL_TIMEOUT_S = 5.0


class TemporalRunner:
    """The ``Runner`` port on Temporal: in every process a client that signals sessions'
    workflows; with ``max_sessions`` > 0 also a Temporal worker polling the task queue,
    running up to that many sessions at once (``max_concurrent_activities``)."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        work: SessionWork,
        max_sessions: int = 200,
        user_max_sessions: int = 0,
        lease_seconds: float = 30.0,
        retry_delay_seconds: float = 5.0,
        max_attempts: int = 5,
        give_up: GiveUp | None = None,
        identity: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.max_sessions = max_sessions
        self.user_max_sessions = user_max_sessions
        self.identity = identity or worker_identity()
        self._leased = LeasedRuns(
            db=db,
            work=work,
            lease_seconds=lease_seconds,
            retry_delay_seconds=retry_delay_seconds,
            max_attempts=max_attempts,
            give_up=give_up,
        )
        # The SDK's core (Rust threads) of this runner alone, so that ``stop`` can end
        # it while Python is still whole: left to the interpreter's exit, a thread of it
        # handing back a last result can abort the process (temporalio/sdk-python#300).
        self._runtime: Runtime | None = None
        self._client: Client | None = None
        self._worker: Worker | None = None
        # The worker's polling and the look for lost wake-ups (processes that run sessions).
        self._polling: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._claims = 0
        # The latest signal being sent for each session (each waits for the one before).
        self._signalling: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        self._runtime = _runtime()
        try:
            self._client = await _connect(
                self.settings, identity=self.identity, runtime=self._runtime
            )
        except BaseException:
            self._runtime = None  # ended now, not at the interpreter's exit (see stop)
            gc.collect()
            raise
        self._leased.start(renew=self.max_sessions > 0)
        if self.max_sessions <= 0:
            return  # takes submit/cancel only: workers elsewhere run the sessions
        from temporalio import activity
        from temporalio.worker import Worker

        from openjules.engine.temporal_workflow import RUN_SESSION, SessionWorkflow

        @activity.defn(name=RUN_SESSION)
        async def run_session(session_id: str) -> None:
            await self._run_session(session_id)

        self._worker = Worker(
            self._client,
            task_queue=self.settings.temporal_task_queue,
            workflows=[SessionWorkflow],
            activities=[run_session],
            max_concurrent_activities=self.max_sessions,
            max_heartbeat_throttle_interval=timedelta(seconds=1),
            default_heartbeat_throttle_interval=timedelta(seconds=1),
            identity=self.identity,
        )
        self._polling = asyncio.create_task(self._worker.run(), name="openjules-temporal-worker")
        self._sweeping = asyncio.create_task(self._sweep(), name="openjules-temporal-sweep")

    async def stop(self) -> None:
        """Stop polling; running sessions' jobs are given back at once for another worker
        (or this one, restarted) to continue."""
        worker, self._worker = self._worker, None
        polling, sweeping = self._polling, self._sweeping
        self._polling = self._sweeping = None
        await stop_tasks([sweeping] if sweeping else [])
        if worker is not None:
            # Cancels the running activities (each gives its job back) and waits for them.
            await worker.shutdown()
        await stop_tasks([polling] if polling else [])
        await self._leased.stop()
        pending = list(self._signalling.values())
        if pending:  # what was asked of Temporal before the stop still reaches it
            _, late = await asyncio.wait(pending, timeout=SIGNAL_TIMEOUT_S)
            await stop_tasks(list(late))
        del worker, polling, pending
        self._client = self._runtime = None
        gc.collect()  # the runtime's threads end here, not at the interpreter's exit

    async def submit(self, session_id: str) -> None:
        """Signal-with-start the session's workflow: started if none runs, else told to
        run the session once more after its current run. Sent in the background (the
        caller's request does not wait on Temporal), in order with the session's other
        signals."""
        client = self._client
        if client is None:
            return
        self._signal(session_id, "wake", lambda: _wake(client, self.settings, session_id))

    async def cancel(self, session_id: str) -> None:
        """Stop the session's work: at once if it runs here, and through Temporal (its
        running activity is cancelled, wherever it runs)."""
        self._leased.cancel(session_id)
        client = self._client
        if client is not None:
            self._signal(session_id, "stop", lambda: _stop(client, session_id))

    def _signal(
        self, session_id: str, what: str, send: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Send a signal after the session's earlier ones (a pause then a resume must not
        reach the workflow as a resume then a pause). A signal Temporal does not take is
        logged: the job is in the database, and the sweep wakes it once Temporal answers."""
        earlier = self._signalling.get(session_id)

        async def in_order() -> None:
            if earlier is not None:
                await asyncio.wait([earlier])
            try:
                await send()
            except Exception as exc:
                log.warning("could not %s session %s through Temporal (%s)", what, session_id, exc)

        task = asyncio.create_task(in_order(), name=f"openjules-temporal-{what}-{session_id}")
        self._signalling[session_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._signalling.get(session_id) is done:
                del self._signalling[session_id]

        task.add_done_callback(forget)

    async def _run_session(self, session_id: str) -> None:
        """The activity: claim the session's job, run it under the lease, and say when to
        try again if it cannot run now."""
        from temporalio import activity
        from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

        # A wait, not a failure: the SDK logs it at DEBUG instead of a warning per try.
        benign = ApplicationErrorCategory.BENIGN
        info = activity.info()
        beating = asyncio.create_task(self._heartbeat(), name=f"openjules-heartbeat-{session_id}")
        try:
            while True:
                self._claims += 1
                owner = f"{self.identity}/{info.workflow_run_id}/{info.attempt}/{self._claims}"
                claimed = await self._claim(session_id, owner=owner)
                if claimed is None:
                    return  # no work: the job is done, or gone with its session
                if isinstance(claimed, timedelta):
                    raise ApplicationError(
                        f"session {session_id} cannot be claimed yet",
                        type="NotClaimable",
                        next_retry_delay=claimed,
                        category=benign,
                    )
                end = await self._run_leased(claimed)
                if end is RunEnd.AGAIN:
                    continue  # enqueued again while it ran
                if end is RunEnd.RETRY:
                    raise ApplicationError(
                        f"session {session_id} failed in the runner; will retry",
                        type="RetryLater",
                        next_retry_delay=timedelta(microseconds=self._leased.retry_delay_us),
                    )
                return
        finally:
            beating.cancel()

    async def _heartbeat(self) -> None:
        from temporalio import activity

        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _claim(self, session_id: str, *, owner: str) -> Lease | timedelta | None:
        """The session's lease; else how long until it may be claimable, or None if the
        job has nothing to run."""
        async with self.db.write() as conn:
            leases = await jobs.claim_many(
                conn,
                owner=owner,
                lease_us=self._leased.lease_us,
                limit=1,
                user_limit=self.user_max_sessions,
                session_id=session_id,
            )
        if leases:
            return leases[0]
        async with self.db.read() as conn:
            job = await jobs.look(conn, session_id=session_id)
        if job is None or job.state is JobState.DONE:
            return None
        now = now_us()
        if job.state is JobState.READY and job.available_time > now:
            wait_us = job.available_time - now  # a retry delay
        elif job.state is JobState.LEASED and job.lease_expire_time is not None:
            # Held by a run elsewhere (a worker that died, until its lease expires).
            wait_us = max(job.lease_expire_time - now, 0)
        else:
            wait_us = int(USER_LIMIT_RETRY_S * 1_000_000)  # the owner is at their limit
        return timedelta(microseconds=max(wait_us, 100_000))

    async def _run_leased(self, lease: Lease) -> RunEnd:
        """Run the lease; if Temporal cancels the activity (the session was stopped, or
        this worker shuts down), stop the work and give the job back now rather than when
        its lease expires: done if the session wants no more work, else ready for the
        next run, without counting an attempt."""
        run = asyncio.create_task(self._leased.run(lease), name=f"openjules-run-{lease.session_id}")
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
            await self._give_back(lease)
            raise

    async def _give_back(self, lease: Lease) -> None:
        try:
            async with self.db.write() as conn:
                if await jobs.unwanted(conn, session_ids=[lease.session_id]):
                    await jobs.finish(conn, lease=lease)
                else:
                    await jobs.release_for_retry(conn, lease=lease, delay_us=0, count_attempt=False)
        except Exception as exc:  # its lease expires instead
            self._leased.report(exc, f"giving back the job of session {lease.session_id}")

    async def _sweep(self) -> None:
        """Signal the sessions whose wake-up was lost: every claimable job at start, then
        those claimable for ``OVERDUE_S`` without a claim."""
        overdue_us = 0
        while True:
            try:
                async with self.db.read() as conn:
                    lost = await jobs.overdue(
                        conn,
                        for_us=overdue_us,
                        user_limit=self.user_max_sessions,
                        limit=SWEEP_BATCH,
                    )
                for session_id in lost:
                    await self.submit(session_id)
            except Exception as exc:
                self._leased.report(exc, "looking for sessions to wake")
            overdue_us = int(OVERDUE_S * 1_000_000)
            await asyncio.sleep(SWEEP_S)


def _runtime() -> Runtime:
    try:
        from temporalio.runtime import Runtime, TelemetryConfig
    except ImportError as exc:
        raise RunnerUnavailable(
            "OPENJULES_RUNNER=temporal needs the Temporal SDK: pip install 'openjules[temporal]'"
        ) from exc
    return Runtime(telemetry=TelemetryConfig())


async def _connect(settings: Settings, *, identity: str, runtime: Runtime) -> Client:
    from temporalio.client import Client
    from temporalio.service import TLSConfig

    tls: bool | TLSConfig = False
    api_key = settings.temporal_api_key.get_secret_value() or None
    files = (
        settings.temporal_tls_ca_file,
        settings.temporal_tls_cert_file,
        settings.temporal_tls_key_file,
    )
    if bool(settings.temporal_tls_cert_file) != bool(settings.temporal_tls_key_file):
        raise RunnerUnavailable(
            "OPENJULES_TEMPORAL_TLS_CERT_FILE and OPENJULES_TEMPORAL_TLS_KEY_FILE go together "
            "(a client certificate and its key, for mTLS): set both or neither"
        )
    if any(files):
        try:
            ca, cert, key = (path.read_bytes() if path else None for path in files)
        except OSError as exc:
            raise RunnerUnavailable(f"cannot read a Temporal TLS file: {exc}") from exc
        tls = TLSConfig(server_root_ca_cert=ca, client_cert=cert, client_private_key=key)
    elif settings.temporal_tls or api_key:
        tls = True
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            tls=tls,
            api_key=api_key,
            identity=identity,
            runtime=runtime,
        )
    except Exception as exc:
        # The SDK's message carries its transport's debug form; the refusal is what counts.
        reason = "connection refused" if "Connection refused" in str(exc) else str(exc)
        raise RunnerUnavailable(
            f"cannot reach Temporal at {settings.temporal_address} (namespace "
            f"{settings.temporal_namespace}): {reason}. Start it (e.g. `temporal server "
            "start-dev`) or set OPENJULES_TEMPORAL_ADDRESS."
        ) from exc


async def _stop(client: Client, session_id: str) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    from openjules.engine.temporal_workflow import STOP, workflow_id

    handle = client.get_workflow_handle(workflow_id(session_id))
    try:
        await handle.signal(STOP, rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S))
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:  # not running: nothing to stop
            raise


async def _wake(client: Client, settings: Settings, session_id: str) -> None:
    from openjules.engine.temporal_workflow import (
        WAKE,
        SessionRun,
        SessionWorkflow,
        workflow_id,
    )

    await client.start_workflow(
        SessionWorkflow.run,
        SessionRun(
            session_id=session_id,
            run_timeout_seconds=settings.agent_wall_seconds + RUN_TIMEOUT_MARGIN_S,
            heartbeat_timeout_seconds=settings.temporal_heartbeat_timeout_seconds,
        ),
        id=workflow_id(session_id),
        task_queue=settings.temporal_task_queue,
        start_signal=WAKE,
        rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S),
    )
