"""``openjules keys``: create, list and revoke API keys."""

from __future__ import annotations

import re

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from openjules.cli.context import database_options, run_in_db
from openjules.settings import Settings
from openjules.store import users
from openjules.store.clock import format_timestamp


@click.group()
def keys() -> None:
    """Manage API keys (at most 3 live keys per user by default)."""


@keys.command("create")
@click.option("--user", "user_name", required=True, help="User name; created if new.")
@database_options
def create(user_name: str, *, settings: Settings) -> None:
    """Create a key for USER. The key is printed once, alone on the last line."""

    async def action(conn: AsyncConnection) -> users.NewApiKey:
        user = await users.get_or_create_user(conn, name=user_name)
        return await users.create_key(conn, user=user, max_live_keys=settings.max_keys_per_user)

    key = run_in_db(settings, action)
    click.echo(f"Created API key {key.id} for user {user_name!r}. It is shown only once:")
    click.echo(key.secret)


@keys.command("list")
@click.option("--user", "user_name", default=None, help="Only this user's keys.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
@database_options
def list_(user_name: str | None, show_all: bool, *, settings: Settings) -> None:
    """List keys (ids only: secrets are never stored)."""

    async def action(conn: AsyncConnection) -> list[users.ApiKeyInfo]:
        return await users.list_keys(conn, user_name=user_name)

    rows = [k for k in run_in_db(settings, action) if show_all or k.live]
    if not rows:
        click.echo("No API keys.")
        return
    click.echo(f"{'KEY ID':<14}{'USER':<20}{'CREATED':<30}STATUS")
    for k in rows:
        status = "live" if k.live else f"revoked {format_timestamp(k.revoke_time or 0)}"
        click.echo(f"{k.id:<14}{k.user_name:<20}{format_timestamp(k.create_time):<30}{status}")


# A whole key is ``ojk_<id>_<secret>``; its id is the 12 hex digits after the prefix.
WHOLE_KEY = re.compile(rf"^{users.KEY_PREFIX}_(?P<id>[0-9a-f]{{12}})_")


@keys.command("revoke")
@click.argument("key_id")
@database_options
def revoke(key_id: str, *, settings: Settings) -> None:
    """Revoke the key KEY_ID (see `openjules keys list`; not the key itself)."""
    if key_id.startswith(f"{users.KEY_PREFIX}_"):
        # Never echoed: the argument is a secret.
        found = WHOLE_KEY.match(key_id)
        if found:
            raise click.ClickException(
                "That is an API key itself, not its id: keys are revoked by id, the 12 "
                f"characters after '{users.KEY_PREFIX}_' (this key's id is {found['id']}; "
                "`openjules keys list` shows the id of every key)."
            )
        raise click.ClickException(
            "That looks like an API key itself, not a key id: keys are revoked by id "
            "(`openjules keys list` shows the id of every key)."
        )

    async def action(conn: AsyncConnection) -> None:
        await users.revoke_key(conn, key_id=key_id)

    run_in_db(settings, action)
    click.echo(f"Revoked API key {key_id}.")
