"""The engine stops when asked, whatever its loops are doing: here a change arrives in
the same moment as the stop, waking the webhook sender's and the dispatcher's waits just
as they are cancelled (with ``asyncio.wait_for`` on Python 3.11 the sender went on as if
never cancelled, and ``openjules serve`` never exited after SIGTERM)."""

from __future__ import annotations

import asyncio

from openjules.engine.service import EngineService
from openjules.settings import Settings
from openjules.store.changes import EVERYTHING
from openjules.store.migrate import upgrade_to_head

# Long enough for the loops to finish their first look and wait for work (milliseconds).
SETTLE_S = 0.5
STOP_LIMIT_S = 10.0
ROUNDS = 3


async def test_the_engine_stops_when_a_change_arrives_as_it_is_stopped(
    server_settings: Settings,
) -> None:
    await asyncio.to_thread(upgrade_to_head, server_settings.resolved_database_url())
    for _ in range(ROUNDS):
        engine = EngineService(settings=server_settings, workers=1)
        await engine.start()
        await asyncio.sleep(SETTLE_S)
        engine.db.changes.publish([EVERYTHING])
        # Timed from outside: the stop's own waits would absorb a cancellation.
        stopping = asyncio.create_task(engine.stop())
        done, _ = await asyncio.wait({stopping}, timeout=STOP_LIMIT_S)
        assert done, f"the engine had not stopped {STOP_LIMIT_S:g} s after it was asked to"
