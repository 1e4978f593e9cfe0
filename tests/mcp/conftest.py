"""Fixtures of the MCP tests: the module's ``agent`` server (tests.agent_fixtures: a live
server per backend whose workers run the agent on the fake model), its user
(``user_key``) and a source (``greeter``, tests.mcp.fixtures)."""

from __future__ import annotations

from tests.agent_fixtures import agent, agent_overrides, model, scripts  # noqa: F401
from tests.mcp.fixtures import greeter, user_key  # noqa: F401
