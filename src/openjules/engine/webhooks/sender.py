"""``WebhookSender``: delivers the outbox (``store.webhook_outbox``), in every process that
runs the engine (``openjules serve`` and ``openjules worker``).

One loop claims due events with a lease and delivers each in a task of its own, at most
``concurrency`` at once, so one slow receiver does not hold up the others. It wakes when
this process hears of a change (any change may have written events: ``store.changes``),
when a delivery ends, and otherwise when the next retry comes due (at least every
``MAX_IDLE_S``, for events other processes wrote or let go). Leases outlast the longest
attempt; a sender killed mid-delivery leaves leases that expire, and its events are
delivered by whichever sender claims them next: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx

from openjules._cancellation import stop_tasks, within
from openjules.engine.leased_runs import asked_to_stop, worker_identity
from openjules.engine.webhooks.delivery import deliver, new_client
from openjules.settings import Settings
from openjules.store import webhook_outbox
from openjules.store.clock import now_us
from openjules.store.database import Database
from openjules.store.webhook_outbox import DueEvent, EventState

log = logging.getLogger("openjules.webhooks")

# Deliveries in flight per process.
DEFAULT_CONCURRENCY = 8
# A lease outlasts an attempt (bounded by the webhook timeout) by this much.
LEASE_MARGIN_S = 5.0
# The longest the loop sleeps without looking: events written or released by other
# processes are noticed within this (changes of other processes usually wake it sooner).
MAX_IDLE_S = 1.0
# The shortest sleep, so an event that is due but cannot be claimed yet does not spin.
MIN_IDLE_S = 0.02
# After a wake-up, the loop looks at most this often: with a hundred sessions running, a
# look per change would be most of the event loop's work, for no event to deliver.
WAKE_COALESCE_S = 0.05
# Settled events and old attempts are pruned this often.
PRUNE_INTERVAL_S = 600.0
# The longest pause after a failure to reach the database (0.5 s, 1 s, 2 s, … this).
MAX_BACKOFF_S = 5.0


def _nothing() -> None:
    pass


class WebhookSender:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        concurrency: int = DEFAULT_CONCURRENCY,
        identity: str | None = None,
    ) -> None:
        self.db = db
        self.concurrency = concurrency
        self.identity = identity or f"{worker_identity()}/webhooks"
        self.timeout_seconds = settings.webhook_timeout_seconds
        self.allow_private = settings.webhooks_allow_private
        self.base_url = settings.resolved_public_base_url()
        self.lease_us = int((settings.webhook_timeout_seconds + LEASE_MARGIN_S) * 1_000_000)
        self.retry_delays_us = [int(d * 1_000_000) for d in settings.webhook_retry_delays()]
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._stop_listening: Callable[[], None] = _nothing

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        self._client = new_client(timeout_seconds=self.timeout_seconds)
        self._stop_listening = self.db.changes.subscribe(self._heard)
        self._loop_task = asyncio.create_task(self._run(), name="openjules-webhooks")

    async def stop(self) -> None:
        """Stop delivering; the events held are given back for the next sender."""
        task, self._loop_task = self._loop_task, None
        if task is None:
            return
        self._stop_listening()
        await stop_tasks([task, *self._in_flight])
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        try:
            async with self.db.write() as conn:
                await webhook_outbox.release(conn, owner=self.identity)
        except Exception as exc:  # the leases expire instead
            log.warning("could not give back the webhook events in flight: %s", exc)

    def _heard(self, _change: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        next_prune = time.monotonic()
        while True:
            self._wake.clear()
            try:
                if time.monotonic() >= next_prune:
                    await self._prune()
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                idle = await self._claim_and_start()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if asked_to_stop():  # a cleanup turned the cancellation into an error
                    raise asyncio.CancelledError from exc
                failures += 1
                if failures == 1:
                    log.warning("webhook deliveries wait: %s", exc)
                idle = min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_S)
            if idle > 0:
                looked = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await within(self._wake.wait(), seconds=idle)
                    # Woken by a change: changes come in bursts (each step of each running
                    # session is one), so look once per burst, not once per change.
                    await asyncio.sleep(WAKE_COALESCE_S - (time.monotonic() - looked))

    async def _claim_and_start(self) -> float:
        """Start delivering what is due; returns how long to sleep (0: look again now)."""
        room = self.concurrency - len(self._in_flight)
        if room <= 0:
            return MAX_IDLE_S  # a delivery that ends wakes the loop
        due, upcoming = await webhook_outbox.look(self.db.reads)
        if not due:
            if upcoming is None:
                return MAX_IDLE_S
            return min(max((upcoming - now_us()) / 1_000_000, MIN_IDLE_S), MAX_IDLE_S)
        async with self.db.write() as conn:
            claimed = await webhook_outbox.claim(
                conn, owner=self.identity, lease_us=self.lease_us, limit=room
            )
        for event in claimed:
            task = asyncio.create_task(self._deliver(event), name=f"webhook-{event.message_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._delivered)
        return 0 if claimed else MIN_IDLE_S

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def _deliver(self, event: DueEvent) -> None:
        assert self._client is not None, "started"
        outcome = await deliver(
            self._client,
            event,
            base_url=self.base_url,
            timeout_seconds=self.timeout_seconds,
            allow_private=self.allow_private,
        )
        try:
            async with self.db.write() as conn:
                state = await webhook_outbox.finish_attempt(
                    conn,
                    event=event,
                    owner=self.identity,
                    outcome=outcome,
                    retry_delays_us=self.retry_delays_us,
                )
        except Exception as exc:  # the lease expires and the event is delivered again
            log.warning("could not record the delivery of %s: %s", event.message_id, exc)
            return
        if state is EventState.FAILED:
            log.warning(
                "webhook event %s (%s) to webhooks/%s failed after %d attempts: %s",
                event.message_id,
                event.event_type,
                event.webhook_id,
                event.attempts + 1,
                outcome.error,
            )

    async def _prune(self) -> None:
        async with self.db.write() as conn:
            deleted = await webhook_outbox.prune(conn)
        if deleted:
            log.info("pruned %d old webhook events and attempts", deleted)
