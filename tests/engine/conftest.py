"""Agent fixtures (repo, fake_model, agent_server, client, source) and the API server of
tests whose sessions run in `openjules worker` processes (api, user), for engine tests; a uid
for one test's sandboxed commands alone (own_user)."""

from tests.engine.agent_support import (
    agent_server,
    agent_settings_overrides,
    client,
    fake_model,
    repo,
    source,
)
from tests.engine.uid_support import own_user
from tests.engine.worker_support import api, user

__all__ = [
    "agent_server",
    "agent_settings_overrides",
    "api",
    "client",
    "fake_model",
    "own_user",
    "repo",
    "source",
    "user",
]
