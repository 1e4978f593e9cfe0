"""Agent fixtures (repo, fake_model, agent_server, client, source) for engine tests."""

from tests.engine.agent_support import (
    agent_server,
    agent_settings_overrides,
    client,
    fake_model,
    repo,
    source,
)

__all__ = ["agent_server", "agent_settings_overrides", "client", "fake_model", "repo", "source"]
