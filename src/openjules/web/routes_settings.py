"""Sources, API keys and webhooks pages (filled in by the settings pages' change)."""

from __future__ import annotations

from fastapi import APIRouter

from openjules.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)
