"""Fixtures of the SDK tests (``openjules.client`` against live servers, both backends).

- ``sdk_flavour``: ``sync`` (``Client``) and ``async`` (``AsyncClient``); a test taking it
  runs once with each.
- ``open_sdk(base_url, api_key, **options)``: the SDK in the test's flavour, closed after
  the test.
- ``scripts``, ``model``, ``agent_overrides``, ``agent`` (module-scoped, for tests whose
  sessions really run): ``tests.agent_fixtures``'.

tests/conftest.py's ``server`` (workers=0) serves the tests that need no agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from openjules.client import Client
from tests.agent_fixtures import agent, agent_overrides, model, scripts  # noqa: F401
from tests.client.lifecycle_support import Flavour, connect


class OpenSDK(Protocol):
    def __call__(self, base_url: str, api_key: str, **options: Any) -> Client: ...


@pytest.fixture(params=list(Flavour), ids=[f.value for f in Flavour])
def sdk_flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)


@pytest.fixture
def open_sdk(sdk_flavour: Flavour) -> Iterator[OpenSDK]:
    opened: list[Client] = []

    def open_one(base_url: str, api_key: str, **options: Any) -> Client:
        jules = connect(sdk_flavour, base_url=base_url, api_key=api_key, **options)
        opened.append(jules)
        return jules

    yield open_one
    for jules in opened:
        jules.close()
