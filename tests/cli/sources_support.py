"""Helpers shared by the `openjules sources` tests: the sources API's view of a registered
repository (repositories themselves are built with tests.support.make_repo)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import ok_json


def get_source(client: httpx.Client, name: str) -> dict[str, Any]:
    return ok_json(client.get(f"/{name}"))


def branch_names(source: dict[str, Any]) -> list[str]:
    return sorted(b["displayName"] for b in source["githubRepo"]["branches"])
