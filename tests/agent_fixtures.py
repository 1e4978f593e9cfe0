"""Module fixtures for tests whose sessions really run; a test package's conftest imports
them (``from tests.agent_fixtures import agent, agent_overrides, model, scripts``).

- ``scripts``: the module's ``Scripts`` (the fake model's answers by prompt).
- ``model``: the fake OpenAI-compatible model answering by ``scripts``.
- ``agent_overrides``: settings of the ``agent`` server besides ``agent_settings``'s (a
  module overrides this fixture).
- ``agent``: a live server on the module's database (tests/conftest.py's
  ``server_settings``, so both backends) whose workers run the agent on ``model``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openjules.settings import Settings
from openjules.testing import FakeModel, LiveServer
from tests.agent_kit import Scripts, agent_settings


@pytest.fixture(scope="module")
def scripts() -> Scripts:
    return Scripts()


@pytest.fixture(scope="module")
def model(scripts: Scripts) -> Iterator[FakeModel]:
    with FakeModel(scripts) as fake:
        yield fake


@pytest.fixture(scope="module")
def agent_overrides() -> dict[str, Any]:
    """Settings of the module's ``agent`` server besides ``agent_settings``'s (a module
    overrides this fixture)."""
    return {}


@pytest.fixture(scope="module")
def agent(
    server_settings: Settings,
    model: FakeModel,
    agent_overrides: dict[str, Any],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    """A live server on the module's database whose workers run the agent on ``model``."""
    data_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    settings = agent_settings(server_settings, data_dir=data_dir, model=model, **agent_overrides)
    with LiveServer(settings) as live:
        yield live
