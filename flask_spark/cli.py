"""``flask spark``: the commands an operator runs against an app's grants."""

from __future__ import annotations

import time
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .admin import GrantAdmin


@click.group("spark")
def spark_command() -> None:
    """Flask-Spark: sign in with Flexmls."""


@spark_command.group("grants")
def grants_command() -> None:
    """The stored grants of this app's key."""


def _admin() -> GrantAdmin:
    state: Any = current_app.extensions.get("spark")
    if state is None:
        raise click.ClickException("Flask-Spark is not set up on this app")
    return GrantAdmin(state)


def _when(at: float) -> str:
    if not at:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


@grants_command.command("list")
@with_appcontext
def list_grants() -> None:
    """List grants: account, scope, expiry, last use (no tokens)."""
    rows = _admin().list()
    if not rows:
        click.echo("No grants.")
        return
    click.echo(f"{'ACCOUNT':<28} {'SCOPE':<24} {'EXPIRES':<16} {'LAST USED':<16} NAME")
    for info in rows:
        expires = "ended" if info.ended else _when(info.expires_at)
        click.echo(
            f"{info.account_id:<28} {info.scope:<24} {expires:<16} "
            f"{_when(info.last_used_at):<16} {info.name or ''}"
        )


@grants_command.command("revoke")
@click.argument("account_id")
@click.option("--scope", default=None, help="Only this scope (idx, private, vow/<portal>).")
@with_appcontext
def revoke_grants(account_id: str, scope: str | None) -> None:
    """End ACCOUNT_ID's grants: sign out every browser, revoke at the platform."""
    count = _admin().revoke(account_id, scope)
    if not count:
        raise click.ClickException(
            f"No grant of account {account_id}" + (f" in {scope}" if scope else "")
        )
    click.echo(f"Revoked {count} grant{'s' if count != 1 else ''} of account {account_id}.")
