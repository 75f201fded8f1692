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
    """The stored grants of this app's keys."""


_INSTANCE_OPTION = click.option(
    "--instance",
    default=None,
    metavar="NAME",
    help="Only this Spark instance's grants (an app may have several).",
)


def _admins(instance: str | None) -> list[GrantAdmin]:
    """The grant admins of every instance on the app, or of ``instance``."""
    states: dict[str, Any] = current_app.extensions.get("spark.instances") or {}
    if not states:
        raise click.ClickException("Flask-Spark is not set up on this app")
    if instance is None:
        return [GrantAdmin(state) for state in states.values()]
    if instance not in states:
        raise click.ClickException(
            f"No Spark instance named {instance!r} (there are: {', '.join(sorted(states))})"
        )
    return [GrantAdmin(states[instance])]


def _when(at: float) -> str:
    if not at:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


@grants_command.command("list")
@_INSTANCE_OPTION
@with_appcontext
def list_grants(instance: str | None) -> None:
    """List grants: account, scope, expiry, last use (no tokens)."""
    admins = _admins(instance)
    rows = [info for admin in admins for info in admin.list()]
    if not rows:
        click.echo("No grants.")
        return
    several = len(current_app.extensions.get("spark.instances") or {}) > 1
    first = f"{'INSTANCE':<12} " if several else ""
    click.echo(f"{first}{'ACCOUNT':<28} {'SCOPE':<24} {'EXPIRES':<16} {'LAST USED':<16} NAME")
    for info in rows:
        expires = "ended" if info.ended else _when(info.expires_at)
        first = f"{info.instance:<12} " if several else ""
        click.echo(
            f"{first}{info.account_id:<28} {info.scope:<24} {expires:<16} "
            f"{_when(info.last_used_at):<16} {info.name or ''}"
        )


@grants_command.command("revoke")
@click.argument("account_id")
@click.option("--scope", default=None, help="Only this scope (idx, private, vow/<portal>).")
@_INSTANCE_OPTION
@with_appcontext
def revoke_grants(account_id: str, scope: str | None, instance: str | None) -> None:
    """End ACCOUNT_ID's grants: sign out every browser, revoke at the platform."""
    count = sum(admin.revoke(account_id, scope) for admin in _admins(instance))
    if not count:
        raise click.ClickException(
            f"No grant of account {account_id}" + (f" in {scope}" if scope else "")
        )
    click.echo(f"Revoked {count} grant{'s' if count != 1 else ''} of account {account_id}.")
